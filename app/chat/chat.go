package chat

import (
	"context"
	"embed"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// Pusher sends frames to every connection of a user on any instance.
// Agents' connections are indexed under AgentKey(agent id).
type Pusher interface {
	PushToUser(ctx context.Context, uid uint64, frames ...hub.Frame) error
}

// Inbox stores a notification for a user (kind "chat"): counted as
// unread and replayed when they come back.
type Inbox interface {
	Notify(ctx context.Context, uid uint64, kind string, body json.RawMessage, collapseKey, idempotencyKey string) error
}

// Presence tells whether a user (or, under AgentKey, an agent) has an
// open connection on any instance.
type Presence interface {
	Online(ctx context.Context, uid uint64) (bool, error)
}

// Instances tells whether an instance is still running (its registry
// entry is alive).
type Instances interface {
	Alive(ctx context.Context, instance string) (bool, error)
}

// Clock is the time assignment, the grace and the settle window use.
type Clock interface{ Now() time.Time }

// Conn is one connection of the sender, for the answers meant for it
// alone (chat.ack, errors, the state after a connect).
type Conn interface {
	Send(frames ...hub.Frame) bool
}

// AgentKey is the id an agent's connections are indexed and routed under:
// agent ids and user ids are separate namespaces, and user ids stay
// below 1<<62.
func AgentKey(agent uint64) uint64 { return 1<<62 | agent }

// IsAgentKey reports whether uid is an AgentKey, and of which agent.
func IsAgentKey(uid uint64) (uint64, bool) { return uid &^ (1 << 62), uid&(1<<62) != 0 }

// Config tunes the desk. Every zero value means the default given.
type Config struct {
	// Capacity is how many open conversations an agent holds at most.
	// Zero means 8. Env PUSHDESK_CHAT_CAPACITY.
	Capacity int
	// Grace is how long an agent may have no connection before their
	// conversations move. Zero means 30s. Env PUSHDESK_CHAT_AGENT_GRACE.
	Grace time.Duration
	// Settle is how long hand-outs wait after an agent arrives, so that
	// agents arriving together share the backlog. Zero means 2s. Env
	// PUSHDESK_CHAT_SETTLE.
	Settle time.Duration
	// Rate is how many lines a user may send per 10 s; an agent may send
	// Rate × Capacity (Rate per conversation it may hold). Zero means 20.
	// Env PUSHDESK_CHAT_RATE.
	Rate int
	// Tick is how often the background loop looks for expired graces,
	// dead instances and waiting conversations (each tick costs Redis
	// two or three commands); every third tick it also sends again the
	// announcements whose push failed, and every 15th one instance
	// repairs MySQL from Redis. Zero means 2s.
	Tick time.Duration
	// KeyPrefix prefixes every Redis key. Zero means DefaultKeyPrefix;
	// it must contain a {hash tag}.
	KeyPrefix string
	// TokenTTL is how long a console login's token is valid. Zero means 12h.
	TokenTTL time.Duration
}

func (c *Config) fillDefaults() {
	if c.Capacity <= 0 {
		c.Capacity = 8
	}
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 2 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Tick <= 0 {
		c.Tick = 2 * time.Second
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = 12 * time.Hour
	}
}

// Minter signs agent tokens for console logins.
type Minter func(agent uint64, name string, ttl time.Duration) (string, error)

// Params are the Service's dependencies; all are required but Log,
// Registerer (nil: metrics unregistered) and Clock (nil: the system clock).
type Params struct {
	Config     Config
	Redis      rueidis.Client
	Repo       *models.ChatRepo
	Push       Pusher
	Inbox      Inbox
	Presence   Presence
	Instances  Instances
	NewID      func() uint64
	Mint       Minter
	Instance   string
	Clock      Clock
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Service is the support desk of one instance. Safe for concurrent use.
type Service struct {
	cfg      Config
	rc       rueidis.Client
	repo     *models.ChatRepo
	push     Pusher
	inbox    Inbox
	presence Presence
	insts    Instances
	newID    func() uint64
	mint     Minter
	instance string
	clock    Clock
	log      *slog.Logger
	m        *metrics
	k        keys

	kick     chan struct{}
	lost     atomic.Int64 // ms a script's answer was lost: reconcile soon
	mu       sync.Mutex
	local    map[uint64]localAgent // this instance's agent connections
	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

type localAgent struct {
	name  string
	conns int
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// New returns the desk; Start runs its background loop.
func New(p Params) *Service {
	p.Config.fillDefaults()
	if p.Log == nil {
		p.Log = slog.Default()
	}
	if p.Clock == nil {
		p.Clock = systemClock{}
	}
	return &Service{
		cfg: p.Config, rc: p.Redis, repo: p.Repo, push: p.Push, inbox: p.Inbox, presence: p.Presence,
		insts: p.Instances, newID: p.NewID, mint: p.Mint, instance: p.Instance, clock: p.Clock,
		log: p.Log.With("part", "chat"), m: newMetrics(p.Registerer), k: keys{p.Config.KeyPrefix},
		kick: make(chan struct{}, 1), local: map[uint64]localAgent{}, stop: make(chan struct{}),
	}
}

//go:embed lua/*.lua
var luaFS embed.FS

func script(name string) *rueidis.Lua {
	lib, _ := luaFS.ReadFile("lua/lib.lua")
	src, err := luaFS.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return rueidis.NewLuaScript(string(lib) + "\n" + string(src))
}

var (
	openScript     = script("open")
	distScript     = script("distribute")
	closeScript    = script("close")
	transferScript = script("transfer")
	upScript       = script("agent_up")
	downScript     = script("agent_down")
	statusScript   = script("agent_status")
	sweepScript    = script("sweep")
	reapScript     = script("reap")
	restoreScript  = script("restore")
	stateScript    = script("state")
	retellScript   = script("retell")
	loginScript    = script("login")
)

// run executes a chat script with the prefix and a fresh seed.
func (s *Service) run(ctx context.Context, l *rueidis.Lua, args ...string) rueidis.RedisResult {
	argv := append([]string{s.k.p, strconv.FormatUint(rand.Uint64N(1<<31), 10)}, args...)
	return l.Exec(ctx, s.rc, []string{s.k.waiting()}, argv)
}

func (s *Service) nowMS() int64 { return s.clock.Now().UnixMilli() }

func itoa(v int64) string    { return strconv.FormatInt(v, 10) }
func utoa(v uint64) string   { return strconv.FormatUint(v, 10) }
func parseU(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
