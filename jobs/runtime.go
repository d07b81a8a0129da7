package jobs

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/internal/redisurl"
)

// Runtime is one process's side of the job queue: the client that queues
// work (made before the app, which takes Queue in app.New) and, in a
// process that runs them, the worker loops, the scheduler and the queue
// metrics. The order of a process's life: NewRuntime, app.New(…,
// r.Queue()), r.Start(a), …, r.Shutdown() (after the listeners stopped),
// a.Close(), r.Close().
type Runtime struct {
	cfg      app.Config
	log      *slog.Logger
	redisOpt asynq.RedisConnOpt
	client   *asynq.Client
	waker    *Waker // nil without workers here
	app      atomic.Pointer[app.App]

	workers     *Workers
	cancelTasks context.CancelFunc // ends the workers' running tasks (see Workers)
	scheduler   *asynq.PeriodicTaskManager
	stats       *QueueCollector
}

// NewRuntime parses cfg.RedisURL for asynq and, with workers, configures
// the worker loops and the scheduler (started by Start).
func NewRuntime(cfg app.Config, workers bool, log *slog.Logger) (*Runtime, error) {
	opt, err := RedisOpt(cfg.RedisURL)
	if err != nil {
		return nil, app.RedactError(fmt.Errorf("parse PUSHDESK_REDIS_URL for asynq: %w", err))
	}
	cfg = cfg.WithDefaults()
	r := &Runtime{cfg: cfg, log: log, redisOpt: opt, client: asynq.NewClient(opt)}
	if !workers {
		return r, nil
	}
	var tasks context.Context
	tasks, r.cancelTasks = context.WithCancel(context.Background())
	if r.workers, err = NewWorkers(opt, cfg, log, tasks); err != nil {
		r.cancelTasks()
		_ = r.client.Close()
		return nil, err
	}
	r.waker = r.workers.Waker()
	return r, nil
}

// RedisOpt is the queue's Redis, for asynqmon.
func (r *Runtime) RedisOpt() asynq.RedisConnOpt { return r.redisOpt }

// RedisOpt is asynq's connection option for url: a RedisClusterClientOpt
// for the redis+cluster:// form (see package redisurl; asynq's keys carry
// their queue's hash tag, so its scripts stay in one slot), else what
// asynq.ParseRedisURI makes of it.
func RedisOpt(url string) (asynq.RedisConnOpt, error) {
	if !redisurl.IsCluster(url) {
		return asynq.ParseRedisURI(url)
	}
	c, err := redisurl.Parse(url)
	if err != nil {
		return nil, err
	}
	opt := asynq.RedisClusterClientOpt{Addrs: c.Addrs, Username: c.Username, Password: c.Password}
	if c.TLS {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return opt, nil
}

// Queue is what app.New takes: enqueued fast work wakes this process's
// worker loops or, in a process without them, everyone's (see Waker).
func (r *Runtime) Queue() Queue {
	q := Queue{Client: r.client, Wake: r.wake}
	if r.waker != nil {
		q.Workers = r.waker.Wake
	}
	return q
}

func (r *Runtime) wake() {
	if r.waker != nil {
		r.waker.Wake()
		return
	}
	if a := r.app.Load(); a != nil {
		go a.Cluster.PublishWake()
	}
}

// Start runs the workers and the scheduler for a (if this process has
// workers), lets other processes' wakes reach the loops, and exports the
// queues' state on a's /metrics: the queues are desk-wide, so only
// processes with workers export them and a web-only process's scrapes
// cost Redis nothing.
func (r *Runtime) Start(a *app.App) error {
	r.app.Store(a)
	if r.workers == nil {
		return nil
	}
	var err error
	if r.scheduler, err = NewScheduler(r.redisOpt, a, a.Log); err != nil {
		return err
	}
	r.stats = NewQueueCollector(r.redisOpt)
	if err := a.Metrics.Registry.Register(r.stats); err != nil {
		return err
	}
	if err := r.workers.Start(NewMux(a, r.Queue())); err != nil {
		return err
	}
	if err := r.scheduler.Start(); err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	return nil
}

// Shutdown stops the scheduler and the workers: in-flight tasks get
// cfg.WorkerShutdown, and are cancelled before asynq's own deadline (see
// CancelTasksAt). Call it after the listeners stopped and before
// App.Close, whose ingest batcher's last flush goes through the queue.
func (r *Runtime) Shutdown() {
	if r.scheduler != nil {
		r.scheduler.Shutdown()
	}
	if r.workers != nil {
		stop := time.AfterFunc(CancelTasksAt(r.cfg), r.cancelTasks)
		r.workers.Shutdown()
		stop.Stop()
		r.cancelTasks()
	}
	if r.stats != nil {
		_ = r.stats.Close()
	}
}

// Close closes the queue client: after App.Close.
func (r *Runtime) Close() { _ = r.client.Close() }

// For binds r to a, for a server that starts and stops it (handlers.Jobs).
func (r *Runtime) For(a *app.App) Bound { return Bound{r, a} }

// Bound is a Runtime with its app.
type Bound struct {
	r *Runtime
	a *app.App
}

// Start starts the runtime for its app (see Runtime.Start).
func (b Bound) Start() error { return b.r.Start(b.a) }

// Shutdown is Runtime.Shutdown.
func (b Bound) Shutdown() { b.r.Shutdown() }

// Close is Runtime.Close.
func (b Bound) Close() { b.r.Close() }

// Waiting is how many of the worker loops wait for a wake now.
func (b Bound) Waiting() int {
	if b.r.waker == nil {
		return 0
	}
	return b.r.waker.Waiting()
}
