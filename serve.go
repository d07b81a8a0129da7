package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only when PUSHDESK_PPROF_ADDR is set
	"net/url"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/handlers"
	"github.com/pushdesk/pushdesk/jobs"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
	"github.com/uptrace/bun"
)

var serveCmd = &command{
	name:    "serve",
	noArgs:  true,
	usage:   "serve",
	summary: "run the listeners (WS, SSE, APIs, console) and by default the workers",
	about: `Migrates the schema, then serves the public listener (WebSocket /ws, SSE /sse,
the user and chat APIs, the agent console, /healthz, /readyz), the internal API
(/internal/v1/*, /metrics, asynqmon at /admin/queues/) on PUSHDESK_INTERNAL_ADDR
or else on the public listener, and the asynq workers, scheduler and background
loops.

With PUSHDESK_WORKERS=0 it is web-only: run "pushdesk worker" beside it.
SIGTERM or SIGINT drains: clients are told to reconnect elsewhere, in-flight
tasks finish, nothing queued is lost.`,
	run: func(ctx context.Context, log *slog.Logger, _ any, _ []string) error { return serve(ctx, log, false) },
}

var workerCmd = &command{
	name:    "worker",
	noArgs:  true,
	usage:   "worker",
	summary: "run the queue workers, scheduler and loops only (no public listener)",
	about: `Migrates the schema, then runs what serve runs besides its listeners: the asynq
worker loops (fast and delayed delivery, broadcast fan-out, retention), the
scheduler (recurring broadcasts, hourly retention), the registry sweeper and
the chat loop. Its only listener is PUSHDESK_HEALTH_ADDR, with /healthz,
/readyz and /metrics.

Run it beside web-only serve processes (PUSHDESK_WORKERS=0): they queue the
work and wake its loops through Redis. SIGTERM or SIGINT lets in-flight tasks
finish.`,
	run: func(ctx context.Context, log *slog.Logger, _ any, _ []string) error { return serve(ctx, log, true) },
}

var migrateCmd = &command{
	name:    "migrate",
	noArgs:  true,
	usage:   "migrate",
	summary: "create or update the MySQL schema (128 message shards too) and exit",
	about: `Applies every migration the database lacks, creating the database if it is
missing, and exits. Idempotent and safe to run from several processes at once
(a MySQL named lock); serve and worker run it too when they start.`,
	run: func(ctx context.Context, log *slog.Logger, _ any, _ []string) error {
		cfg, err := app.ConfigFromEnv()
		if err != nil {
			return err
		}
		return migrate(ctx, log, cfg, true)
	},
}

type tokenOpts struct {
	role, name, groups *string
	ttl                *time.Duration
}

var tokenCmd = &command{
	name:    "token",
	usage:   "token UID [-role agent] [-name N] [-groups a,b] [-ttl 24h]",
	summary: "print a token for user (or agent) UID signed with PUSHDESK_JWT_SECRET",
	about: `Prints an HS256 JWT for UID, as the main site would sign it: for trying the
service and for tests. Agents log in to the console with "pushdesk agent" logins
instead.`,
	flags: func(fs *flag.FlagSet) any {
		return &tokenOpts{
			role:   fs.String("role", "user", "user or agent"),
			name:   fs.String("name", "", "display name"),
			groups: fs.String("groups", "", "comma-separated segments"),
			ttl:    fs.Duration("ttl", 24*time.Hour, "validity"),
		}
	},
	run: token,
}

// serve runs serve or, with workerOnly, worker, until SIGINT or SIGTERM.
func serve(ctx context.Context, log *slog.Logger, workerOnly bool) error {
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := migrate(ctx, log, cfg, false); err != nil {
		return err
	}
	rt, err := jobs.NewRuntime(cfg, cfg.RunWorkers || workerOnly, log)
	if err != nil {
		return err
	}
	a, err := app.New(ctx, cfg, log, rt.Queue())
	if err != nil {
		rt.Close()
		return err
	}
	var srv *handlers.Server
	if workerOnly {
		srv = handlers.NewWorker(a, rt.For(a))
	} else {
		srv = handlers.NewServer(a, rt.For(a), rt.RedisOpt())
	}
	if err := srv.Start(); err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	if cfg.PprofAddr != "" {
		// Profiling for operators, on its own (private) listener.
		go func() { log.Warn("pprof stopped", "err", http.ListenAndServe(cfg.PprofAddr, nil)) }()
	}
	logStarted(log, a, srv, workerOnly)
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	log.Info("stopped")
	return nil
}

// logStarted says, one line each, what listens where and which optional
// parts are on.
func logStarted(log *slog.Logger, a *app.App, srv *handlers.Server, workerOnly bool) {
	cfg := a.Cfg
	log = log.With("instance", a.Instance)
	onOff := func(on bool) string {
		if on {
			return "on"
		}
		return "off"
	}
	workers := func() {
		log.Info("queue workers on", "loops", cfg.WorkerLoops, "concurrency", cfg.WorkerConcurrency,
			"poll", cfg.QueuePoll.String(), "scheduler", "on")
	}
	if workerOnly {
		log.Info("pushdesk worker started: no public listener", "health", srv.Addr(),
			"serves", "/healthz /readyz /metrics", "metrics", "http://"+srv.Addr()+"/metrics")
		workers()
		return
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	log.Info("public listener", "addr", srv.Addr(), "tls", onOff(cfg.TLSCert != ""),
		"serves", "/ws /sse /api/v1/ /console/ /demo/ /healthz /readyz")
	internal := srv.InternalAddr()
	ischeme := "http"
	if cfg.InternalAddr == "" {
		internal, ischeme = srv.Addr()+" (the public listener)", scheme
	}
	log.Info("internal API", "addr", internal, "serves", "/internal/v1/ /metrics /admin/queues/")
	base := ischeme + "://" + srv.InternalAddr()
	metricsAuth := "none (internal listener)"
	if cfg.InternalAddr == "" {
		metricsAuth = "Authorization: Bearer $PUSHDESK_METRICS_TOKEN (default: the ingest key)"
	}
	log.Info("metrics on", "url", base+"/metrics", "auth", metricsAuth)
	// When asynqmon is off, handlers (routeAdmin) has said so and why.
	if cfg.AdminPassword != "" && cfg.AdminPassword != cfg.IngestKey {
		log.Info("asynqmon on (basic auth)", "url", base+"/admin/queues/", "user", cfg.AdminUser, "password", "PUSHDESK_ADMIN_PASSWORD")
	}
	if cfg.AuthURL != "" {
		host := cfg.AuthURL
		if u, err := url.Parse(cfg.AuthURL); err == nil {
			host = u.Host
		}
		log.Info("user center on: opaque tokens are checked there", "host", host)
	} else {
		log.Info("user center off: tokens are HS256 JWTs only")
	}
	if cfg.RunWorkers {
		workers()
	} else {
		log.Info("queue workers off (PUSHDESK_WORKERS=0): run pushdesk worker beside this process")
	}
	if cfg.PprofAddr != "" {
		log.Info("pprof on", "addr", cfg.PprofAddr)
	}
}

// migrate applies the migrations the database lacks and says which. With
// a shard map it prepares each shard server too: strict (pushdesk
// migrate), a shard server that fails is an error; else (serve and
// worker starting) it is logged and the start goes on, so that a shard
// server down stops only its own users' deliveries (docs/scaling.md).
func migrate(ctx context.Context, log *slog.Logger, cfg app.Config, strict bool) error {
	db, err := models.Open(ctx, cfg.MySQLDSN, 4)
	if err != nil {
		return err
	}
	defer db.Close()
	var applied []string
	if cfg.MySQLShards == "" {
		applied, err = migrations.Run(ctx, db)
	} else {
		applied, err = migrateSharded(ctx, log, cfg, db, strict)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		log.Info("schema up to date: no migration to apply")
	} else {
		log.Info("schema migrated", "applied", applied)
	}
	return nil
}

func token(_ context.Context, _ *slog.Logger, o any, args []string) error {
	opts := o.(*tokenOpts)
	if len(args) != 1 {
		return usage(find("token"))
	}
	uid, err := strconv.ParseUint(args[0], 10, 63)
	if err != nil || uid == 0 {
		return usageError(fmt.Sprintf("pushdesk token: UID %q: want a positive integer", args[0]))
	}
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	if cfg.JWTSecret == "" {
		return fmt.Errorf("PUSHDESK_JWT_SECRET is required")
	}
	id := auth.Identity{UID: uid, Role: auth.Role(*opts.role), Name: *opts.name}
	if *opts.groups != "" {
		id.Groups = strings.Split(*opts.groups, ",")
	}
	tok, err := auth.NewTokens(cfg.JWTSecret).Mint(id, *opts.ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// migrateSharded is migrate's part for a deployment with a shard map.
func migrateSharded(ctx context.Context, log *slog.Logger, cfg app.Config, db *bun.DB, strict bool) ([]string, error) {
	ranges, err := models.ParseShardMap(cfg.MySQLShards)
	if err != nil {
		return nil, err
	}
	applied, err := migrations.RunWithoutShards(ctx, db)
	if err != nil {
		return applied, err
	}
	shards, err := models.OpenShards(ctx, db, cfg.MySQLDSN, ranges, 2, true)
	if err != nil {
		if strict {
			return applied, app.RedactError(err)
		}
		log.Error("a shard server is down: the shards of those that answer are checked, the rest are not", "err", app.RedactError(err))
		if shards, err = models.OpenShards(ctx, db, cfg.MySQLDSN, ranges, 2, false); err != nil {
			return applied, app.RedactError(err)
		}
	}
	defer shards.Close()
	if err := migrations.EnsureShards(ctx, shards); err != nil {
		if strict {
			return applied, app.RedactError(err)
		}
		log.Error("shard tables not checked", "err", app.RedactError(err))
	}
	return applied, nil
}
