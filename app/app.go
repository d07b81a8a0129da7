package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
	"github.com/uptrace/bun"
)

// Enqueuer hands deliveries to the job queue. jobs.Queue implements it; app
// does not import asynq. The deliveries of one call become one task.
type Enqueuer interface {
	// EnqueueDeliver queues deliveries on the fast queue as one task.
	EnqueueDeliver(ctx context.Context, ds []*Delivery) error
	// EnqueueDelayed queues a delivery for inactive users on the delayed
	// queue, where tasks are aggregated into batches.
	EnqueueDelayed(ctx context.Context, d *Delivery) error
}

// App is one Pushdesk process: its connections, its clients of Redis and
// MySQL, and the services built on them. Safe for concurrent use.
type App struct {
	Cfg      Config
	Redis    rueidis.Client
	DB       *bun.DB
	Repo     *models.Repo
	Auth     *Auth
	Hub      *hub.Hub
	IDs      *IDGen
	Log      *slog.Logger
	Instance string
	// Queue and Broadcasts must be set before ingest is used.
	Queue      Enqueuer
	Broadcasts BroadcastQueue
	// Clock drives activity routing, last seen and retention; tests
	// advance it.
	Clock   Clock
	Metrics *Metrics
	// Chat is the support desk.
	Chat *chat.Service

	users       *userCenter // nil without PUSHDESK_AUTH_URL
	ingest      *Batcher[*Delivery]
	shardWriter *Batcher[models.Message]
	connLog     *Batcher[models.ConnEvent]
	lastSeen    *Batcher[models.LastSeen]
	fast        fastCache

	onWake          atomic.Pointer[func()] // see SetOnWake
	republishing    atomic.Int64           // pushes being tried again (see republish)
	republishWarned atomic.Int64           // unix second of the last "dropped" warning
	mismatches      int                    // registry refreshes in a row that found drift (keepAlive only)
	node            atomic.Uint64          // the id-generator node this instance leases

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New connects to Redis and MySQL and starts the background parts
// (pub/sub listener, batch writers). The schema must exist (see
// migrations.Run).
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fillDefaults()
	if log == nil {
		log = slog.Default()
	}
	RegisterSecrets(cfg.secrets()...)
	log = slog.New(Redacting(log.Handler()))
	opt, err := rueidis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, RedactError(fmt.Errorf("parse PUSHDESK_REDIS_URL: %w", err))
	}
	opt.DisableCache = true
	opt.ConnWriteTimeout = 5 * time.Second
	// rueidis PINGs each connection every Dialer.KeepAlive (1 s by
	// default); with ConnWriteTimeout a dead server is still seen within
	// 10 s, and an idle instance sends Redis 5 times fewer PINGs.
	opt.Dialer.KeepAlive = redisKeepAlive
	// Let concurrent commands share a flush: fewer write syscalls under load.
	opt.MaxFlushDelay = 20 * time.Microsecond
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, RedactError(fmt.Errorf("connect redis %s: %w", RedactURL(cfg.RedisURL), err))
	}
	db, err := models.Open(ctx, cfg.MySQLDSN, cfg.MySQLMaxConns)
	if err != nil {
		rc.Close()
		return nil, RedactError(err)
	}
	instance := cfg.InstanceID
	if instance == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		instance = hex.EncodeToString(b[:])
	}
	node, err := leaseNode(ctx, rc, instance)
	if err != nil {
		rc.Close()
		db.Close()
		return nil, err
	}
	a := &App{
		Cfg: cfg, Redis: rc, DB: db, Repo: &models.Repo{DB: db},
		Auth: NewAuth(cfg.JWTSecret), Hub: hub.New(), IDs: NewIDGen(node),
		Log: log.With("instance", instance), Instance: instance,
	}
	a.node.Store(node)
	a.Metrics = newMetrics(a)
	if cfg.AuthURL != "" {
		a.users = &userCenter{url: cfg.AuthURL, client: &http.Client{Timeout: 2 * time.Second}}
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	// Concurrent ingest calls share one task: asynq handles tasks one
	// dequeue at a time, so fewer, fuller tasks carry more messages.
	a.ingest = NewBatcher(BatcherConfig{MaxBatch: 256, Flushers: 1, Linger: cfg.IngestLinger, LingerFrom: 4}, func(ctx context.Context, ds []*Delivery) error {
		return a.Queue.EnqueueDeliver(ctx, ds)
	})
	// Messages are pushed before their commit, so under load (the batch
	// before held 16 rows or more) a shard batch may wait up to
	// shardLinger to grow, and one flusher writes them.
	a.shardWriter = NewBatcher(BatcherConfig{MaxBatch: 2000, Flushers: 1, Linger: shardLinger, LingerFrom: 16}, a.Repo.InsertMessages)
	a.connLog = NewBatcher(BatcherConfig{MaxBatch: 1000, Flushers: 1}, logged(a, "connection log", a.Repo.InsertConnEvents))
	a.lastSeen = NewBatcher(BatcherConfig{MaxBatch: 1000, Flushers: 1}, logged(a, "last seen", a.Repo.UpsertLastSeen))
	if err := a.announce(ctx); err != nil {
		a.Close()
		return nil, err
	}
	a.Chat = newChat(a)
	a.Chat.Start()
	a.wg.Add(2)
	go a.listen()
	go a.keepAlive()
	return a, nil
}

// redisKeepAlive is the rueidis connections' PING interval (see New).
const redisKeepAlive = 5 * time.Second

// shardLinger is how long, under load, a batch of messages waits for
// more before it is written. MariaDB's cost is mostly per statement, and a
// batch holds one INSERT per shard table it touches: a batch of a few
// dozen rows over 128 tables is a statement per row or two. Waiting is
// cheap for the user, who was pushed the message before its commit; what
// reads a pushed id waits for the commit (settle), and the task stays on
// the queue until it, so nothing is lost meanwhile.
//
// Measured (BENCH.md method, 2,000 clients, 20,000 messages, alternating
// runs), MariaDB's CPU per message and the delivery rate: 10 ms, 36–45 µs
// and 6,500–7,300/s; 60 ms, 24–26 µs; 100 ms, 18–21 µs and 7,600–8,600/s;
// 200 ms, 16 µs but a worse p99 (29 and 44 ms against 19–26 ms). Eight
// writers with an eighth of the tables each (at 100 ms) were worse than
// one: 24–34 µs, since each commit costs too. Before that, one flusher had
// beaten two, and 10 ms had beaten 5 ms.
const shardLinger = 100 * time.Millisecond

// logged wraps a fire-and-forget flush: it retries a failed write three
// times (0.2 s, 0.4 s, 0.8 s apart) and logs what could not be written.
func logged[T any](a *App, what string, f func(context.Context, []T) error) func(context.Context, []T) error {
	return func(ctx context.Context, rows []T) error {
		var err error
		for attempt := range 4 {
			if attempt > 0 {
				time.Sleep(100 * time.Millisecond << attempt)
			}
			if err = f(ctx, rows); err == nil {
				return nil
			}
		}
		a.Log.Error("async write failed", "what", what, "rows", len(rows), "err", err)
		a.Metrics.Errors.WithLabelValues(what).Inc()
		return err
	}
}

// Ready reports whether Redis and MySQL answer.
func (a *App) Ready(ctx context.Context) error {
	if err := a.Redis.Do(ctx, a.Redis.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if err := a.DB.PingContext(ctx); err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	return nil
}

// Close stops the background loops, removes this instance from the
// registry, flushes the batch writers (the ingest batcher into the queue,
// so close the queue after this) and closes Redis and MySQL. Call it after
// the listeners and workers have stopped.
func (a *App) Close() {
	a.cancel()
	if a.Chat != nil {
		a.Chat.Shutdown()
	}
	a.wg.Wait() // keepAlive must not re-register what retire removes
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.retire(ctx)
	cancel()
	a.ingest.Close()
	a.shardWriter.Close()
	a.connLog.Close()
	a.lastSeen.Close()
	a.Redis.Close()
	a.DB.Close()
}

// CloseClients asks every connection to go (1012 on WS, event: reconnect on
// SSE), waits up to wait for them to be gone, and returns how many there
// were.
func (a *App) CloseClients(code int, reason string, wait time.Duration) int {
	n := 0
	a.Hub.Each(func(c *hub.Client) { c.Close(code, reason); n++ })
	deadline := time.Now().Add(wait)
	for conns, _ := a.Hub.Stats(); conns > 0 && time.Now().Before(deadline); conns, _ = a.Hub.Stats() {
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// nodeLeaseTTL outlives a few missed refreshes; a node whose instance died
// is free again after it.
const nodeLeaseTTL = time.Minute

// leaseNode takes an id-generator node number no running instance holds,
// so two instances never make the same id.
func leaseNode(ctx context.Context, rc rueidis.Client, instance string) (uint64, error) {
	for range 1024 {
		n, err := rc.Do(ctx, rc.B().Incr().Key(keyNodeCounter).Build()).AsInt64()
		if err != nil {
			return 0, fmt.Errorf("take id node: %w", err)
		}
		node := uint64(n) & 0x3ff
		err = rc.Do(ctx, rc.B().Set().Key(keyNodeLease(node)).Value(instance).Nx().Px(nodeLeaseTTL).Build()).Error()
		if err == nil {
			return node, nil
		}
		if !rueidis.IsRedisNil(err) {
			return 0, fmt.Errorf("lease id node: %w", err)
		}
	}
	return 0, fmt.Errorf("all 1024 id nodes are leased")
}
