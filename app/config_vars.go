package app

import "slices"

// Var is one environment variable that ConfigFromEnv (or a command of its
// own, such as token) reads: its meaning, its default and the commands it
// matters to. `pushdesk help CMD` prints the ones of CMD; a test keeps the
// list, config.go and the README's table in step.
type Var struct {
	Name    string
	Default string // "" when unset by default
	Meaning string
	// Commands are the pushdesk commands that use it; none for the
	// variables only `go tool task run|test` read.
	Commands []string
}

var (
	cmdsServe   = []string{"serve"}
	cmdsProcess = []string{"serve", "worker"}
)

// Vars lists every PUSHDESK_* variable, in the README's order.
var Vars = []Var{
	{"PUSHDESK_ADDR", ":8080", "public listener (WS, SSE, user API, console, demo)", cmdsServe},
	{"PUSHDESK_INTERNAL_ADDR", "", "if set, /internal/*, /metrics and asynqmon are served only here", cmdsServe},
	{"PUSHDESK_HEALTH_ADDR", ":8081", "the worker's only listener: /healthz, /readyz, /metrics", []string{"worker"}},
	{"PUSHDESK_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis", cmdsProcess},
	{"PUSHDESK_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/pushdesk", "MySQL/MariaDB, go-sql-driver form (the database is created if missing)", []string{"serve", "worker", "migrate", "agent"}},
	{"PUSHDESK_MYSQL_SHARDS", "", "shard map \"0-63=DSN;64-127=DSN\": which server holds each range of the 128 message shard tables (all other tables stay on PUSHDESK_MYSQL_DSN; see docs/scaling.md)", []string{"serve", "worker", "migrate"}},
	{"PUSHDESK_JWT_SECRET", "required", "HS256 secret for user and agent tokens", []string{"serve", "worker", "token"}},
	{"PUSHDESK_INGEST_KEY", "required", "bearer key for /internal/* (and /metrics on the public listener by default)", cmdsProcess},
	{"PUSHDESK_TLS_CERT", "", "with PUSHDESK_TLS_KEY: serve HTTPS/WSS directly", cmdsServe},
	{"PUSHDESK_TLS_KEY", "", "the key of PUSHDESK_TLS_CERT", cmdsServe},
	{"PUSHDESK_HEARTBEAT", "25s", "server ping interval; silent peers dropped after 2.5x", cmdsServe},
	{"PUSHDESK_AGENT_HEARTBEAT", "5s", "the same for agents' connections", cmdsServe},
	{"PUSHDESK_WORKER_CONCURRENCY", "256", "asynq delivery goroutines", cmdsProcess},
	{"PUSHDESK_WORKER_LOOPS", "8", "asynq servers (dequeue loops) sharing them, 1-64; beyond two they run only under load", cmdsProcess},
	{"PUSHDESK_INGEST_LINGER", "1ms", "under load, how long ingest calls wait to share a queue task (0: never)", cmdsServe},
	{"PUSHDESK_QUEUE_POLL", "2s", "how often the loop that serves both queues polls them (fast work wakes the loops at once)", cmdsProcess},
	{"PUSHDESK_WORKERS", "on", "0 runs a web-only serve (no queue workers; run `pushdesk worker` beside it)", cmdsServe},
	{"PUSHDESK_INSTANCE_ID", "random", "this instance's name in the registry", cmdsProcess},
	{"PUSHDESK_MYSQL_MAX_CONNS", "32", "MySQL connections per process", cmdsProcess},
	{"PUSHDESK_ACTIVE_WITHIN", "24h", "users seen this recently (or never) get the fast queue", cmdsServe},
	{"PUSHDESK_RELEASE_AFTER", "360h", "messages for users away longer are released, not stored", cmdsServe},
	{"PUSHDESK_RETENTION", "360h", "stored messages older than this are deleted (hourly)", cmdsProcess},
	{"PUSHDESK_AUTH_URL", "", "user center for opaque (non-JWT) tokens", cmdsServe},
	{"PUSHDESK_CORS_ORIGINS", "*", "browser origins allowed to call /api/v1/me/* and open /sse (comma-separated, or *)", cmdsServe},
	{"PUSHDESK_ALLOWED_ORIGINS", "the CORS list", "browser origins whose pages may open /ws and /sse (the server's own always may; none beyond it when PUSHDESK_CORS_ORIGINS is *)", cmdsServe},
	{"PUSHDESK_METRICS_TOKEN", "the ingest key", "bearer token /metrics asks for on the public listener (no PUSHDESK_INTERNAL_ADDR)", cmdsServe},
	{"PUSHDESK_AUTH_TTL_BASE", "3650s", "user-center answers are cached base + rand(1..jitter)", cmdsServe},
	{"PUSHDESK_AUTH_TTL_JITTER", "3000s", "see PUSHDESK_AUTH_TTL_BASE", cmdsServe},
	{"PUSHDESK_AUTH_NEGATIVE_TTL", "60s", "a rejected token is cached this long", cmdsServe},
	{"PUSHDESK_ADMIN_USER", "admin", "basic-auth user for asynqmon at /admin/queues/", cmdsServe},
	{"PUSHDESK_ADMIN_PASSWORD", "", "basic-auth password for asynqmon; unset: asynqmon is off (it never opens with the ingest key)", cmdsServe},
	{"PUSHDESK_PPROF_ADDR", "", "serve Go's pprof on this (private) address", cmdsProcess},
	{"PUSHDESK_CHAT_CAPACITY", "8", "open conversations an agent holds at most", cmdsProcess},
	{"PUSHDESK_CHAT_AGENT_GRACE", "30s", "how long an agent may be without a connection before their conversations move", cmdsProcess},
	{"PUSHDESK_CHAT_SETTLE", "2s", "after an agent arrives, how long hand-outs of waiting conversations wait for more agents", cmdsProcess},
	{"PUSHDESK_CHAT_RATE", "20", "chat lines a sender may send per 10 s", cmdsServe},
	{"PUSHDESK_FRAME_RATE", "30", "client frames a user connection may send per second (agents: more, see docs/protocol.md)", cmdsServe},
	{"PUSHDESK_FRAME_BURST", "300", "client frames a user connection may send at once", cmdsServe},
	{"PUSHDESK_CONNECT_CONCURRENCY", "256", "connects an instance runs at once; more wait up to PUSHDESK_CONNECT_WAIT", cmdsServe},
	{"PUSHDESK_CONNECT_WAIT", "2s", "how long a connect waits for a turn before it is refused with 1013 and a retry hint", cmdsServe},
	{"PUSHDESK_DATA_DIR", ".data", "where `go tool task run|test` keep the private Redis/MariaDB they start", nil},
}

// VarsOf returns the variables command cmd reads, in Vars order.
func VarsOf(cmd string) []Var {
	var out []Var
	for _, v := range Vars {
		if slices.Contains(v.Commands, cmd) {
			out = append(out, v)
		}
	}
	return out
}
