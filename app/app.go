package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/broadcast"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/app/cluster"
	"github.com/pushdesk/pushdesk/app/delivery"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/app/session"
	"github.com/pushdesk/pushdesk/internal/clock"
	"github.com/pushdesk/pushdesk/internal/redisurl"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
	"github.com/uptrace/bun"
)

// Queue is the job queue the services hand work to; jobs.Queue
// implements it (app does not import asynq).
type Queue interface {
	delivery.Queue
	broadcast.Queue
	// WakeWorkers wakes this process's queue worker loops, if it has any,
	// when another process published that it enqueued fast work.
	WakeWorkers()
}

// App is one Pushdesk process: its clients of Redis and MySQL and the
// services built on them, each in its own package. Safe for concurrent
// use; its fields are set by New and never after.
type App struct {
	Cfg      Config
	Redis    rueidis.Client
	DB       *bun.DB
	Repo     *models.Repo
	Log      *slog.Logger
	Instance string
	// Clock drives activity routing, last seen and retention; tests
	// advance it.
	Clock   *clock.Clock
	Metrics *metrics.Metrics
	IDs     *ids.Leased
	Hub     *hub.Hub

	Auth       *auth.Service
	Cluster    *cluster.Service
	Activity   *activity.Service
	Broadcasts *broadcast.Service
	Delivery   *delivery.Service
	Chat       *chat.Service
	Session    *session.Service
}

// New connects to Redis and MySQL and starts the services' background
// parts (pub/sub listener, registry, batch writers, the chat's loops).
// The schema must exist (see migrations.Run). q takes the work for the
// queue workers.
func New(ctx context.Context, cfg Config, log *slog.Logger, q Queue) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fillDefaults()
	if log == nil {
		log = slog.Default()
	}
	RegisterSecrets(cfg.secrets()...)
	log = slog.New(Redacting(log.Handler()))
	rc, err := dialRedis(cfg.RedisURL)
	if err != nil {
		return nil, err
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
	log = log.With("instance", instance)
	shards, err := openShards(ctx, cfg, db, log)
	if err != nil {
		rc.Close()
		db.Close()
		return nil, RedactError(err)
	}
	repo := &models.Repo{DB: db, Shards: shards}
	closeDBs := func() { shards.Close(); db.Close() }
	identity, err := cluster.CheckIdentity(ctx, rc, repo)
	if err != nil {
		rc.Close()
		closeDBs()
		return nil, RedactError(err)
	}
	gen, err := ids.Lease(ctx, rc, instance, log)
	if err != nil {
		rc.Close()
		closeDBs()
		return nil, err
	}
	a := &App{
		Cfg: cfg, Redis: rc, DB: db, Repo: repo, Log: log, Instance: instance,
		Clock: new(clock.Clock), IDs: gen, Hub: hub.New(),
	}
	a.Metrics = metrics.New(a.Hub.Stats)
	a.Auth = auth.New(auth.Config{Secret: cfg.JWTSecret, UserCenterURL: cfg.AuthURL,
		TTLBase: cfg.AuthTTLBase, TTLJitter: cfg.AuthTTLJitter, NegativeTTL: cfg.AuthNegativeTTL}, rc)
	// The cluster comes first (everything pushes through it), so what it
	// hands on goes to services made after it: these closures run only
	// once it is started, below, when they all exist.
	a.Cluster, err = cluster.New(ctx, cluster.Deps{
		Redis: rc, Hub: a.Hub, Repo: a.Repo, IDs: gen, Log: log, Metrics: a.Metrics, Instance: instance, Identity: identity,
		Counts: func(ctx context.Context, uid uint64) (hub.Frame, error) {
			u, err := a.Delivery.Unread(ctx, uid)
			return frames.UnreadFrame(u), err
		},
		Control:   func(uid uint64, f hub.Frame) { a.Session.Control(uid, f) },
		Broadcast: func(envelope []byte) { a.Broadcasts.Receive(envelope) },
		Resync:    func() { a.Session.ResyncAll() },
		Wake:      q.WakeWorkers,
	})
	if err != nil {
		gen.Release(context.WithoutCancel(ctx))
		rc.Close()
		closeDBs()
		return nil, err
	}
	a.Activity = activity.New(activity.Deps{Redis: rc, Repo: a.Repo, Clock: a.Clock, Log: log, Metrics: a.Metrics,
		Policy: activity.Policy{ActiveWithin: cfg.ActiveWithin, ReleaseAfter: cfg.ReleaseAfter}})
	a.Broadcasts = broadcast.New(broadcast.Deps{
		Redis: rc, Repo: a.Repo, Hub: a.Hub, Cluster: a.Cluster, Activity: a.Activity, Queue: q, IDs: gen.Gen,
		Clock: a.Clock, Log: log, Metrics: a.Metrics, Instance: instance, ReleaseAfter: cfg.ReleaseAfter, Retention: cfg.Retention,
	})
	a.Delivery = delivery.New(delivery.Deps{
		Redis: rc, Repo: a.Repo, Cluster: a.Cluster, Activity: a.Activity, Broadcasts: a.Broadcasts, Queue: q, IDs: gen.Gen,
		Clock: a.Clock, Log: log, Metrics: a.Metrics, Retention: cfg.Retention, IngestLinger: cfg.IngestLinger,
	})
	a.Chat = newChat(a)
	a.Session = session.New(session.Deps{
		Repo: a.Repo, Hub: a.Hub, Cluster: a.Cluster, Activity: a.Activity, Broadcasts: a.Broadcasts, Delivery: a.Delivery,
		Chat: a.Chat, Log: log, Metrics: a.Metrics, Clock: a.Clock, Instance: instance,
		UserHeartbeat: cfg.Heartbeat, AgentHeartbeat: cfg.AgentHeartbeat,
		FrameRate: cfg.FrameRate, FrameBurst: cfg.FrameBurst, ChatLineLimit: cfg.chatLineLimit(),
		Connects: cfg.ConnectConcurrency, ConnectWait: cfg.ConnectWait,
	})
	a.Cluster.Start()
	a.Chat.Start()
	return a, nil
}

// dialRedis opens the rueidis client for url: a cluster client for the
// redis+cluster:// form (see package redisurl), else rueidis's own reading.
func dialRedis(url string) (rueidis.Client, error) {
	opt, err := RedisOptions(url)
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
		return nil, RedactError(fmt.Errorf("connect redis %s: %w", RedactURL(url), err))
	}
	if redisurl.IsCluster(url) && rc.Mode() != rueidis.ClientModeCluster {
		// rueidis falls back to a plain client when the seed is no
		// cluster node; the keys' slots and sharded pub/sub then differ
		// from what the URL promised the other processes.
		rc.Close()
		return nil, fmt.Errorf("PUSHDESK_REDIS_URL names a cluster, but %s is not a cluster node", RedactURL(url))
	}
	return rc, nil
}

// RedisOptions is rueidis's options for url. A cluster URL's seeds are
// InitAddress; its user, password and TLS go into the options as
// rueidis.ParseURL would set them.
func RedisOptions(url string) (rueidis.ClientOption, error) {
	if !redisurl.IsCluster(url) {
		return rueidis.ParseURL(url)
	}
	c, err := redisurl.Parse(url)
	if err != nil {
		return rueidis.ClientOption{}, err
	}
	opt := rueidis.ClientOption{InitAddress: c.Addrs, Username: c.Username, Password: c.Password}
	if c.TLS {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return opt, nil
}

// redisKeepAlive is the rueidis connections' PING interval (see dialRedis).
const redisKeepAlive = 5 * time.Second

// shardPingTimeout bounds the start's check of each shard server.
const shardPingTimeout = 3 * time.Second

// openShards opens the pools of the shard map, if there is one (nil
// without). A shard server that does not answer does not stop the start:
// it is logged, and its users' deliveries fail and retry until it is back,
// while everyone else is served (docs/scaling.md).
func openShards(ctx context.Context, cfg Config, db *bun.DB, log *slog.Logger) (*models.Shards, error) {
	ranges, err := models.ParseShardMap(cfg.MySQLShards)
	if err != nil || ranges == nil {
		return nil, err
	}
	shards, err := models.OpenShards(ctx, db, cfg.MySQLDSN, ranges, cfg.MySQLMaxConns, false)
	if err != nil {
		return nil, err
	}
	if err := shards.Ping(ctx, shardPingTimeout); err != nil {
		log.Error("shard servers down at start: their users' deliveries will retry until they are back", "err", RedactError(err))
	}
	for _, s := range shards.Servers {
		log.Info("shard server", "server", s.Name, "shards", s.Ranges())
	}
	return shards, nil
}

// Ready reports whether Redis and MySQL answer. MySQL is the main
// database: a shard server of the shard map is left out on purpose, since
// an instance taken out of the load balancer fails every user, not only
// that server's (docs/scaling.md).
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
	a.Session.Close()
	a.Chat.Shutdown()
	a.Cluster.Close()
	a.Delivery.Close()
	a.Activity.Close()
	a.Redis.Close()
	a.Repo.Shards.Close()
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
