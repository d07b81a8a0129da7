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
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/jobs"
	"github.com/pushdesk/pushdesk/web"
)

// Server is one running Pushdesk process: the public (and optional
// internal) listener, the asynq worker, and app. Build it with NewServer,
// start it with Start, stop it with Shutdown.
type Server struct {
	App *app.App

	public, internal *fiber.App
	publicLn         net.Listener
	internalLn       net.Listener
	queue            *asynq.Client
	workers          *jobs.Workers      // nil with PUSHDESK_WORKERS=0
	cancelTasks      context.CancelFunc // ends the workers' running tasks (see jobs.Workers)
	scheduler        *asynq.PeriodicTaskManager
	queueStats       *jobs.QueueCollector // with the workers: the queues' state on /metrics
	healthOnly       bool                 // pushdesk worker: the one listener is HealthAddr's
	draining         atomic.Bool
	shutdown         sync.Once
	// frameHook, when set (by tests, before any connection), handles
	// client frames instead of App.HandleFrame.
	frameHook func(context.Context, *hub.Client, []byte)
}

// NewServer wires routes, the queue client and (unless disabled) the
// worker around a.
func NewServer(a *app.App) (*Server, error) {
	redisOpt, err := asynq.ParseRedisURI(a.Cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("parse PUSHDESK_REDIS_URL for asynq: %w", err)
	}
	s := &Server{App: a, queue: asynq.NewClient(redisOpt)}
	// Enqueued fast work wakes this process's worker loops or, in a
	// process without them, everyone's (see jobs.Waker).
	wake := func() { go a.PublishWake() }
	if a.Cfg.RunWorkers {
		if err := s.setupWorkers(redisOpt); err != nil {
			return nil, err
		}
		wake = s.workers.Waker().Wake
	}
	a.Queue = jobs.Queue{Client: s.queue, Wake: wake}
	a.Broadcasts = jobs.Queue{Client: s.queue, Wake: wake}
	s.public = newFiber(a)
	ops := s.public
	if a.Cfg.InternalAddr != "" {
		s.internal = newFiber(a)
		ops = s.internal
	}
	// /internal/*, /metrics and asynqmon share the internal listener when
	// there is one.
	s.routeInternal(ops)
	routeOps(ops, a, redisOpt, s.internal == nil)
	if s.internal != nil {
		s.internal.Use(func(c *fiber.Ctx) error { return fiber.ErrNotFound })
	}
	s.routePublic(s.public)
	return s, nil
}

// setupWorkers configures the asynq worker loops and the scheduler, and
// lets other processes' wakes reach the loops.
func (s *Server) setupWorkers(redisOpt asynq.RedisConnOpt) error {
	a := s.App
	var tasks context.Context
	tasks, s.cancelTasks = context.WithCancel(context.Background())
	var err error
	if s.workers, err = jobs.NewWorkers(redisOpt, a.Cfg, a.Log, tasks); err != nil {
		return err
	}
	a.SetOnWake(s.workers.Waker().Wake)
	if s.scheduler, err = jobs.NewScheduler(redisOpt, a, a.Log); err != nil {
		return err
	}
	// The queues are desk-wide: processes with workers export them, so a
	// web-only process's scrapes cost Redis nothing.
	s.queueStats = jobs.NewQueueCollector(redisOpt)
	return a.Metrics.Registry.Register(s.queueStats)
}

func newFiber(a *app.App) *fiber.App {
	return fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ErrorHandler:          errorHandler(a.Log.Error),
		BodyLimit:             2 << 20,
		ReadBufferSize:        16 << 10, // tokens in the query string can be long
		IdleTimeout:           75 * time.Second,
		Network:               fiber.NetworkTCP,
		// No WriteTimeout: it would cut SSE streams (see PITFALLS).
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
			return app.Errorf(503, "draining", "shutting down")
		}
		if err := s.App.Ready(ctx); err != nil {
			return app.Errorf(503, "unavailable", "%v", err)
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
	if s.workers != nil {
		if err := s.workers.Start(jobs.NewMux(s.App, jobs.Queue{Client: s.queue, Wake: s.workers.Waker().Wake})); err != nil {
			return err
		}
		if err := s.scheduler.Start(); err != nil {
			return fmt.Errorf("start scheduler: %w", err)
		}
	}
	return nil
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
	if s.scheduler != nil {
		s.scheduler.Shutdown()
	}
	// The workers' tasks wind down before App.Close, whose ingest
	// batcher's last flush goes through the queue.
	if s.workers != nil {
		stop := time.AfterFunc(jobs.CancelTasksAt(s.App.Cfg), s.cancelTasks)
		s.workers.Shutdown()
		stop.Stop()
	}
	if s.queueStats != nil {
		_ = s.queueStats.Close()
	}
	s.App.Close()
	_ = s.queue.Close() // after App.Close: its ingest batcher flushes into the queue
}
