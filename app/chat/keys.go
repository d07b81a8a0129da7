package chat

import "time"

// Every Redis key of the chat starts with the prefix (default
// "pd:{chat}:"). The {chat} hash tag keeps them all in one cluster slot,
// so each script may touch any of them; the scripts build their own key
// names from the prefix (ARGV[1]) and get only P+"waiting" as KEYS[1].
//
//	waiting        zset conversation → ms it started waiting
//	avail          zset agent → load, for agents connected and online
//	connected      set of agents with a connection
//	gone           zset agent → ms its last connection closed
//	agent:{a}      hash name, status (online|away)
//	aconn:{a}      hash instance → the agent's connections there
//	held:{a}       set of conversations agent a holds
//	conv:{c}       hash user, agent, status, opened (ms), and reason and at
//	               (ms) of its last hand-out (or return to waiting), for
//	               live ones
//	user:{u}       the user's live conversation
//	last:{u}       the user's previous agent (sticky), 30 days
//	settle         ms until which hand-outs wait for more agents
//	inst:{i}       set of agents with connections on instance i
//	insts          set of instances with agent connections
//	nconv          number of live conversations
//	built          set once the live state was rebuilt from MySQL
//	rebuilding     the rebuild's lock
//	tell           hash conversation → ms: announcements to send again
//	repairing      held for a period by the instance whose turn it is to
//	               repair MySQL
//	lock:{u}       the per-user open lock (SET NX PX)
//	rate:{s}:{w}   lines of sender s in 10-second window w
//	fail:{k}       failed console logins of an email or address
const DefaultKeyPrefix = "pd:{chat}:"

// Timings of the keys above.
const (
	openLockTTL   = 3 * time.Second  // seed 000's per-user lock
	rateWindow    = 10 * time.Second // PUSHDESK_CHAT_RATE counts per window
	loginFailTTL  = 15 * time.Minute
	rebuildLockTT = 30 * time.Second
	// orphanAge is how old a conversation MySQL has as waiting or open
	// must be before the repair acts on Redis not having it: longer than
	// any open takes, so that an open still under way is left alone.
	orphanAge = time.Minute
	// recordAge is how old a hand-out must be before the repair records
	// it: older than the recording after it takes, so that the repair
	// does not race a record still under way.
	recordAge = 10 * time.Second
	// settleTimeout bounds what runs after a failure whose context may
	// be spent: a re-read, an undo, noting an announcement to retry.
	settleTimeout = 2 * time.Second
)

type keys struct{ p string }

func (k keys) waiting() string       { return k.p + "waiting" }
func (k keys) avail() string         { return k.p + "avail" }
func (k keys) connected() string     { return k.p + "connected" }
func (k keys) agent(a string) string { return k.p + "agent:" + a }
func (k keys) aconn(a string) string { return k.p + "aconn:" + a }
func (k keys) held(a string) string  { return k.p + "held:" + a }
func (k keys) conv(c string) string  { return k.p + "conv:" + c }
func (k keys) user(u string) string  { return k.p + "user:" + u }
func (k keys) insts() string         { return k.p + "insts" }
func (k keys) inst(i string) string  { return k.p + "inst:" + i }
func (k keys) nconv() string         { return k.p + "nconv" }
func (k keys) built() string         { return k.p + "built" }
func (k keys) rebuildLock() string   { return k.p + "rebuilding" }
func (k keys) tell() string          { return k.p + "tell" }
func (k keys) repairLock() string    { return k.p + "repairing" }
func (k keys) lock(u string) string  { return k.p + "lock:" + u }
func (k keys) rate(s string, w int64) string {
	return k.p + "rate:" + s + ":" + itoa(w)
}
func (k keys) loginFail(what string) string { return k.p + "fail:" + what }
