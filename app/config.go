package app

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/models"
)

// Config is the whole process configuration. It is read once from the
// environment by ConfigFromEnv; every field documents its default.
type Config struct {
	// Addr is the public listener (WS, SSE, user API, console). Default ":8080".
	Addr string
	// InternalAddr, if set, serves /internal/* only there. Default unset.
	InternalAddr string
	// RedisURL is the Redis address. Default "redis://127.0.0.1:6379/0".
	RedisURL string
	// MySQLDSN is the MySQL/MariaDB DSN in go-sql-driver form.
	// Default "root@tcp(127.0.0.1:3306)/pushdesk".
	MySQLDSN string
	// MySQLShards, if set, is the shard map: which server holds each range
	// of the 128 message shard tables ("0-63=<dsn>;64-127=<dsn>", every
	// shard exactly once; see models.ParseShardMap). The other tables stay
	// on MySQLDSN. Default unset: every shard on MySQLDSN.
	// Env PUSHDESK_MYSQL_SHARDS.
	MySQLShards string
	// JWTSecret is the HS256 secret for user and agent tokens. Required.
	JWTSecret string
	// IngestKey is the bearer key for /internal/*. Required.
	IngestKey string
	// TLSCert and TLSKey, when both set, make the public listener serve TLS.
	TLSCert, TLSKey string
	// HealthAddr is `pushdesk worker`'s only listener (/healthz, /readyz,
	// /metrics). Default ":8081". Env PUSHDESK_HEALTH_ADDR.
	HealthAddr string
	// PprofAddr, if set, serves Go's pprof there (keep it private).
	// Env PUSHDESK_PPROF_ADDR.
	PprofAddr string

	// Heartbeat is the server ping interval; a peer silent for 2.5 times
	// this is dropped. Zero means 25s. Env PUSHDESK_HEARTBEAT (Go duration).
	Heartbeat time.Duration
	// AgentHeartbeat is the same for agents' connections (the console
	// has to know at once when an agent is gone). Zero means 5s. Env
	// PUSHDESK_AGENT_HEARTBEAT.
	AgentHeartbeat time.Duration
	// WorkerConcurrency is the number of asynq delivery goroutines.
	// Zero means 256. Env PUSHDESK_WORKER_CONCURRENCY.
	WorkerConcurrency int
	// WorkerLoops is how many asynq servers (each one dequeue loop) share
	// WorkerConcurrency. Zero means 8. Env PUSHDESK_WORKER_LOOPS.
	WorkerLoops int
	// IngestLinger is how long, under load, concurrent ingest calls are
	// held to share one queue task (bigger tasks, fewer Redis round trips
	// and commits per message). Only while the previous task held four
	// calls or more, so a lone message is not delayed. Zero means 1ms;
	// negative turns it off. Env PUSHDESK_INGEST_LINGER ("0" is off).
	IngestLinger time.Duration
	// WorkerShutdown is how long a stopping worker waits for the tasks it
	// runs; they are cancelled WorkerShutdown/5 before that, so each ends
	// as a failure (retried as such) rather than being pushed back to the
	// queue as if it never ran. Zero means 10s. Not an env setting.
	WorkerShutdown time.Duration
	// CORSOrigins lists the browser origins (comma-separated, or "*") that
	// may call the user API and open /sse from pages of their own. Tokens
	// travel in a header or the query, never in cookies, so "*" lets no
	// site act for a user. Env PUSHDESK_CORS_ORIGINS, default "*".
	CORSOrigins string
	// AllowedOrigins lists the browser origins (comma-separated, or "*")
	// whose pages may open /ws and /sse. The server's own origin (the
	// console, the demo) is always allowed, and so are requests without an
	// Origin (clients that are not browsers). Default: the origins
	// CORSOrigins lists, when it lists some rather than "*"; else none.
	// Env PUSHDESK_ALLOWED_ORIGINS.
	AllowedOrigins string
	// MetricsToken is the bearer token /metrics asks for when it is served
	// on the public listener (no InternalAddr). Default: the ingest key.
	// Env PUSHDESK_METRICS_TOKEN.
	MetricsToken string
	// QueuePoll is how often the worker loop that serves both queues
	// polls them when idle. Fast work wakes a loop at once (see
	// jobs.Waker), so the poll only bounds how soon work that comes
	// without a wake runs: retries, due scheduled tasks, the delayed
	// queue's batches. Zero means 2s. Env PUSHDESK_QUEUE_POLL.
	QueuePoll time.Duration
	// MySQLMaxConns caps this process's MySQL connections. Zero means 32.
	// Env PUSHDESK_MYSQL_MAX_CONNS.
	MySQLMaxConns int
	// RunWorkers runs the asynq workers inside serve. Default true;
	// env PUSHDESK_WORKERS=0 turns them off (a web-only process).
	RunWorkers bool
	// InstanceID names this process in the registry. Zero value means a
	// random id. Env PUSHDESK_INSTANCE_ID.
	InstanceID string
	// AdminUser and AdminPassword protect /admin/queues/ (asynqmon),
	// which is served only when AdminPassword is set, and never with the
	// ingest key as its password. Default user "admin", no password.
	// Env PUSHDESK_ADMIN_USER, PUSHDESK_ADMIN_PASSWORD.
	AdminUser, AdminPassword string

	// ActiveWithin: users seen more recently (or never seen) get the fast
	// queue. Zero means 24h. Env PUSHDESK_ACTIVE_WITHIN.
	ActiveWithin time.Duration
	// ReleaseAfter: messages for users not seen for longer are released
	// (not stored). Zero means 360h (15 days). Env PUSHDESK_RELEASE_AFTER.
	ReleaseAfter time.Duration
	// Retention: stored messages older than this are deleted. Zero means
	// 360h (15 days). Env PUSHDESK_RETENTION.
	Retention time.Duration

	// AuthURL, when set, verifies opaque (non-JWT) tokens at a user center.
	// Env PUSHDESK_AUTH_URL.
	AuthURL string
	// AuthTTLBase and AuthTTLJitter: a user-center answer is cached for
	// base + rand(1..jitter). Zero means 3650s and 3000s.
	// Env PUSHDESK_AUTH_TTL_BASE, PUSHDESK_AUTH_TTL_JITTER.
	AuthTTLBase, AuthTTLJitter time.Duration
	// AuthNegativeTTL caches a rejected token. Zero means 60s.
	// Env PUSHDESK_AUTH_NEGATIVE_TTL.
	AuthNegativeTTL time.Duration

	// FrameRate and FrameBurst are a user connection's budget of client
	// frames: FrameRate a second, FrameBurst at once (see FrameBudget);
	// agents get more, after the chat's line limit. Zero means 30 and
	// 300. Env PUSHDESK_FRAME_RATE, PUSHDESK_FRAME_BURST.
	FrameRate, FrameBurst int
	// ConnectConcurrency is how many connects may run at once; one that
	// cannot start within ConnectWait is refused (1013 with a retry hint)
	// rather than left waiting. Zero means 256 and 2s. Env
	// PUSHDESK_CONNECT_CONCURRENCY, PUSHDESK_CONNECT_WAIT.
	ConnectConcurrency int
	ConnectWait        time.Duration

	// Chat configures the support desk (see chat.Config for defaults).
	// Env PUSHDESK_CHAT_CAPACITY, PUSHDESK_CHAT_AGENT_GRACE,
	// PUSHDESK_CHAT_SETTLE, PUSHDESK_CHAT_RATE.
	Chat chat.Config
}

// ConfigFromEnv reads the configuration from the environment and checks
// that required values are present.
func ConfigFromEnv() (Config, error) {
	c := Config{
		Addr:           env("PUSHDESK_ADDR", ":8080"),
		InternalAddr:   os.Getenv("PUSHDESK_INTERNAL_ADDR"),
		RedisURL:       env("PUSHDESK_REDIS_URL", "redis://127.0.0.1:6379/0"),
		MySQLDSN:       env("PUSHDESK_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/pushdesk"),
		MySQLShards:    os.Getenv("PUSHDESK_MYSQL_SHARDS"),
		JWTSecret:      os.Getenv("PUSHDESK_JWT_SECRET"),
		IngestKey:      os.Getenv("PUSHDESK_INGEST_KEY"),
		TLSCert:        os.Getenv("PUSHDESK_TLS_CERT"),
		TLSKey:         os.Getenv("PUSHDESK_TLS_KEY"),
		HealthAddr:     env("PUSHDESK_HEALTH_ADDR", ":8081"),
		PprofAddr:      os.Getenv("PUSHDESK_PPROF_ADDR"),
		InstanceID:     os.Getenv("PUSHDESK_INSTANCE_ID"),
		AdminUser:      env("PUSHDESK_ADMIN_USER", "admin"),
		AdminPassword:  os.Getenv("PUSHDESK_ADMIN_PASSWORD"),
		RunWorkers:     os.Getenv("PUSHDESK_WORKERS") != "0",
		AuthURL:        os.Getenv("PUSHDESK_AUTH_URL"),
		CORSOrigins:    env("PUSHDESK_CORS_ORIGINS", "*"),
		AllowedOrigins: os.Getenv("PUSHDESK_ALLOWED_ORIGINS"),
		MetricsToken:   os.Getenv("PUSHDESK_METRICS_TOKEN"),
	}
	var err error
	if c.Heartbeat, err = envDuration("PUSHDESK_HEARTBEAT"); err != nil {
		return c, err
	}
	for key, dst := range map[string]*time.Duration{
		"PUSHDESK_AGENT_HEARTBEAT":   &c.AgentHeartbeat,
		"PUSHDESK_QUEUE_POLL":        &c.QueuePoll,
		"PUSHDESK_ACTIVE_WITHIN":     &c.ActiveWithin,
		"PUSHDESK_RELEASE_AFTER":     &c.ReleaseAfter,
		"PUSHDESK_RETENTION":         &c.Retention,
		"PUSHDESK_AUTH_TTL_BASE":     &c.AuthTTLBase,
		"PUSHDESK_AUTH_TTL_JITTER":   &c.AuthTTLJitter,
		"PUSHDESK_AUTH_NEGATIVE_TTL": &c.AuthNegativeTTL,
		"PUSHDESK_CHAT_AGENT_GRACE":  &c.Chat.Grace,
		"PUSHDESK_CHAT_SETTLE":       &c.Chat.Settle,
		"PUSHDESK_CONNECT_WAIT":      &c.ConnectWait,
	} {
		if *dst, err = envDuration(key); err != nil {
			return c, err
		}
	}
	if v := os.Getenv("PUSHDESK_MYSQL_MAX_CONNS"); v != "" {
		if c.MySQLMaxConns, err = strconv.Atoi(v); err != nil || c.MySQLMaxConns < 1 {
			return c, fmt.Errorf("PUSHDESK_MYSQL_MAX_CONNS=%q: want a positive integer", v)
		}
	}
	if v := os.Getenv("PUSHDESK_INGEST_LINGER"); v == "0" || v == "0s" {
		c.IngestLinger = -1 // off
	} else if c.IngestLinger, err = envDuration("PUSHDESK_INGEST_LINGER"); err != nil {
		return c, err
	}
	if v := os.Getenv("PUSHDESK_WORKER_LOOPS"); v != "" {
		if c.WorkerLoops, err = strconv.Atoi(v); err != nil || c.WorkerLoops < 1 || c.WorkerLoops > 64 {
			return c, fmt.Errorf("PUSHDESK_WORKER_LOOPS=%q: want an integer from 1 to 64", v)
		}
	}
	for key, dst := range map[string]*int{"PUSHDESK_CHAT_CAPACITY": &c.Chat.Capacity, "PUSHDESK_CHAT_RATE": &c.Chat.Rate,
		"PUSHDESK_FRAME_RATE": &c.FrameRate, "PUSHDESK_FRAME_BURST": &c.FrameBurst, "PUSHDESK_CONNECT_CONCURRENCY": &c.ConnectConcurrency} {
		if v := os.Getenv(key); v != "" {
			if *dst, err = strconv.Atoi(v); err != nil || *dst < 1 {
				return c, fmt.Errorf("%s=%q: want a positive integer", key, v)
			}
		}
	}
	if v := os.Getenv("PUSHDESK_WORKER_CONCURRENCY"); v != "" {
		if c.WorkerConcurrency, err = strconv.Atoi(v); err != nil || c.WorkerConcurrency < 1 {
			return c, fmt.Errorf("PUSHDESK_WORKER_CONCURRENCY=%q: want a positive integer", v)
		}
	}
	RegisterSecrets(c.secrets()...) // kept out of every log line and error from now on
	if _, err := models.ParseShardMap(c.MySQLShards); err != nil {
		return c, err
	}
	return c, nil
}

// Validate reports a missing or inconsistent setting that serve needs.
func (c Config) Validate() error {
	if c.JWTSecret == "" {
		return fmt.Errorf("PUSHDESK_JWT_SECRET is required")
	}
	if c.IngestKey == "" {
		return fmt.Errorf("PUSHDESK_INGEST_KEY is required")
	}
	if c.ActiveWithin > 0 && c.ReleaseAfter > 0 && c.ActiveWithin >= c.ReleaseAfter {
		return fmt.Errorf("PUSHDESK_ACTIVE_WITHIN must be shorter than PUSHDESK_RELEASE_AFTER")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("PUSHDESK_TLS_CERT and PUSHDESK_TLS_KEY must be set together")
	}
	if _, err := models.ParseShardMap(c.MySQLShards); err != nil {
		return err
	}
	return nil
}

func (c *Config) fillDefaults() {
	if c.Heartbeat <= 0 {
		c.Heartbeat = 25 * time.Second
	}
	if c.AgentHeartbeat <= 0 {
		c.AgentHeartbeat = 5 * time.Second
	}
	if c.WorkerConcurrency <= 0 {
		c.WorkerConcurrency = 256
	}
	if c.WorkerLoops <= 0 {
		c.WorkerLoops = 8
	}
	if c.IngestLinger == 0 {
		c.IngestLinger = time.Millisecond
	}
	if c.WorkerShutdown <= 0 {
		c.WorkerShutdown = 10 * time.Second
	}
	if c.QueuePoll <= 0 {
		c.QueuePoll = 2 * time.Second
	}
	if c.ActiveWithin <= 0 {
		c.ActiveWithin = 24 * time.Hour
	}
	if c.ReleaseAfter <= 0 {
		c.ReleaseAfter = 15 * 24 * time.Hour
	}
	if c.Retention <= 0 {
		c.Retention = 15 * 24 * time.Hour
	}
	if c.AuthTTLBase <= 0 {
		c.AuthTTLBase = 3650 * time.Second
	}
	if c.AuthTTLJitter <= 0 {
		c.AuthTTLJitter = 3000 * time.Second
	}
	if c.AuthNegativeTTL <= 0 {
		c.AuthNegativeTTL = time.Minute
	}
	if c.AdminUser == "" {
		c.AdminUser = "admin"
	}
	if c.AllowedOrigins == "" && c.CORSOrigins != "*" {
		c.AllowedOrigins = c.CORSOrigins
	}
	if c.MetricsToken == "" {
		c.MetricsToken = c.IngestKey
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envDuration(key string) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive Go duration such as 25s", key, v)
	}
	return d, nil
}

// HeartbeatOf is the ping interval for a connection of role r; a peer
// silent for 2.5 times it is dropped.
func (c *Config) HeartbeatOf(r auth.Role) time.Duration {
	if r == auth.RoleAgent {
		return c.AgentHeartbeat
	}
	return c.Heartbeat
}

// WithDefaults is c with every unset setting at its default (what New
// runs on).
func (c Config) WithDefaults() Config {
	c.fillDefaults()
	return c
}
