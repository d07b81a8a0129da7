package handlers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/web"
)

// Jobs is the process's queue workers, started and stopped with the
// server (jobs.Runtime, bound to its app; see NewServer).
type Jobs interface {
	Start() error
	// Shutdown lets running tasks finish: after the listeners stopped,
	// before App.Close.
	Shutdown()
	// Close closes the queue: after App.Close, whose last ingest batch
	// goes into it.
	Close()
}

// Server is one running Pushdesk process's listeners: the public one (and
// an optional internal one) around app, with the queue workers started
// and stopped beside them. Build it with NewServer, start it with Start,
// stop it with Shutdown.
type Server struct {
	App *app.App

	public, internal *fiber.App
	publicLn         net.Listener
	internalLn       net.Listener
	jobs             Jobs
	healthOnly       bool // pushdesk worker: the one listener is HealthAddr's
	draining         atomic.Bool
	shutdown         sync.Once
	// frameHook, when set (by tests, before any connection), handles
	// client frames instead of the session's HandleFrame.
	frameHook func(context.Context, *hub.Client, []byte)
}

// NewServer wires routes around a; jobs runs beside the listeners and
// queueRedis is the queue's Redis, for asynqmon.
func NewServer(a *app.App, jobs Jobs, queueRedis asynq.RedisConnOpt) *Server {
	s := &Server{App: a, jobs: jobs}
	s.public = newFiber(a)
	ops := s.public
	if a.Cfg.InternalAddr != "" {
		s.internal = newFiber(a)
		ops = s.internal
	}
	// /internal/*, /metrics and asynqmon share the internal listener when
	// there is one.
	s.routeInternal(ops)
	routeOps(ops, a, queueRedis, s.internal == nil)
	if s.internal != nil {
		s.internal.Use(func(c *fiber.Ctx) error { return fiber.ErrNotFound })
	}
	s.routePublic(s.public)
	return s
}

func newFiber(a *app.App) *fiber.App {
	return fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ErrorHandler:          errorHandler(a.Log.Error),
		BodyLimit:             2 << 20,
		ReadBufferSize:        16 << 10, // tokens in the query string can be long
		IdleTimeout:           75 * time.Second,
		Network:               fiber.NetworkTCP,
		// No WriteTimeout: it would cut SSE streams (Fiber applies it to the whole response).
	})
}

func (s *Server) routeInternal(f *fiber.App) {
	a := s.App
	in := f.Group("/internal/v1", ingestAuth(a.Cfg.IngestKey))
	in.Post("/messages", postMessages(a))
	in.Get("/users/:uid/presence", getPresence(a))
	in.Get("/stats", getStats(a))
	in.Post("/broadcasts", postBroadcast(a))
	in.Get("/broadcasts", listBroadcasts(a))
	in.Delete("/broadcasts/:id", deleteBroadcast(a))
	in.Put("/users/:uid/segments", putSegments(a))
}

func (s *Server) routePublic(f *fiber.App) {
	a := s.App
	s.routeHealth(f)
	// Browsers on the main site's pages call these from another origin.
	browser := cors.New(cors.Config{
		AllowOrigins: a.Cfg.CORSOrigins,
		AllowMethods: "GET,POST",
		AllowHeaders: "Authorization, Content-Type, Last-Event-ID",
		MaxAge:       600,
	})
	me := f.Group("/api/v1/me", browser, userAuth(a))
	me.Get("/unread", getUnread(a))
	me.Get("/messages", getMessages(a))
	me.Post("/read", postRead(a))
	me.Post("/ack", postAck(a))
	routeChat(f, a, browser)
	origins := originCheck(a.Cfg)
	f.Get("/ws", origins, userAuth(a), wsUpgrade(s), wsHandler(s))
	f.Get("/sse", browser, origins, userAuth(a), sseHandler(s))
	web.Mount(f)
	f.Use(func(c *fiber.Ctx) error { return fiber.ErrNotFound })
}

// routeHealth mounts /healthz (200 while the process runs) and /readyz
// (200 while Redis and MySQL answer and the process is not draining).
func (s *Server) routeHealth(f *fiber.App) {
	f.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	f.Get("/readyz", func(c *fiber.Ctx) error {
		ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
		defer cancel()
		if s.draining.Load() {
			return apierr.New(503, "draining", "shutting down")
		}
		if err := s.App.Ready(ctx); err != nil {
			return apierr.New(503, "unavailable", "%v", err)
		}
		return c.JSON(fiber.Map{"status": "ready"})
	})
}

// Start binds the listeners, starts serving and starts the worker.
func (s *Server) Start() error {
	cfg := s.App.Cfg
	addr := cfg.Addr
	if s.healthOnly {
		addr = cfg.HealthAddr
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	var ln net.Listener = corkListener{tcp}
	if cfg.TLSCert != "" && !s.healthOnly {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	s.publicLn = ln
	if s.internal != nil {
		if s.internalLn, err = net.Listen("tcp", cfg.InternalAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s: %w", cfg.InternalAddr, err)
		}
		go s.serve(s.internal, s.internalLn)
	}
	go s.serve(s.public, s.publicLn)
	return s.jobs.Start()
}

func (s *Server) serve(f *fiber.App, ln net.Listener) {
	if err := f.Listener(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		s.App.Log.Error("listener stopped", "addr", ln.Addr().String(), "err", err)
	}
}

// Addr is the public listener's address (useful with port 0).
func (s *Server) Addr() string { return s.publicLn.Addr().String() }

// InternalAddr is the internal listener's address, or Addr without one.
func (s *Server) InternalAddr() string {
	if s.internalLn != nil {
		return s.internalLn.Addr().String()
	}
	return s.Addr()
}

// Shutdown stops in the order that loses nothing: refuse new connections,
// tell connected clients to reconnect elsewhere (1012 / event: reconnect),
// stop the listeners, let the worker finish its in-flight tasks, then
// flush the batch writers and close Redis and MySQL.
func (s *Server) Shutdown(ctx context.Context) {
	s.shutdown.Do(func() { s.shutdownOnce(ctx) })
}

func (s *Server) shutdownOnce(ctx context.Context) {
	s.draining.Store(true)
	n := s.App.CloseClients(hub.CloseRestart, "server restart", 3*time.Second)
	s.App.Log.Info("draining", "clients", n)
	deadline, ok := ctx.Deadline()
	timeout := 10 * time.Second
	if ok {
		timeout = time.Until(deadline)
	}
	_ = s.public.ShutdownWithTimeout(timeout)
	if s.internal != nil {
		_ = s.internal.ShutdownWithTimeout(timeout)
	}
	// The workers' tasks wind down before App.Close, whose ingest
	// batcher's last flush goes through the queue.
	s.jobs.Shutdown()
	s.App.Close()
	s.jobs.Close()
}
