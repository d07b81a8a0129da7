package app

import "strconv"

// Every Redis key Pushdesk owns (asynq keeps its own "asynq:" keys) is
// built here, under the "pd:" prefix.

const keyPrefix = "pd:"

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// keyUnread is a hash kind → unread count, plus fieldUnacked and
// fieldExists. It is a cache of the shard tables, rebuilt when missing.
func keyUnread(uid uint64) string { return keyPrefix + "unread:" + u64(uid) }

// keyUserConns is a hash instance id → number of this user's connections there.
func keyUserConns(uid uint64) string { return keyPrefix + "uconn:" + u64(uid) }

// keyInstanceChannel is the pub/sub channel an instance listens on.
func keyInstanceChannel(instance string) string { return keyPrefix + "inst:" + instance }

// keyWakeChannel carries wakes for the worker loops of every process from
// processes that enqueue but run no workers (see App.PublishWake).
const keyWakeChannel = keyPrefix + "wake"

// keyNodeCounter suggests id-generator node numbers; keyNodeLease(n) is
// held by the instance using node n (refreshed with its alive key).
const keyNodeCounter = keyPrefix + "node"

func keyNodeLease(n uint64) string { return keyPrefix + "nodelease:" + u64(n) }

const (
	// fieldUnacked counts unread messages no client has acknowledged.
	fieldUnacked = "~unacked"
	// fieldExists marks a rebuilt hash, so that "all zero" differs from "missing".
	fieldExists = "~"
	// fieldBroadcastGen is the broadcast generation a user's cached
	// broadcast counts reflect.
	fieldBroadcastGen = "~gen"
)

// keyIdempotency holds an ingest call's result under its idempotency key.
func keyIdempotency(k string) string { return keyPrefix + "idem:" + k }

// keyIdempotencyPlan holds the rest of an ingest call that failed after
// its delayed part was enqueued (see ingestClaimed).
func keyIdempotencyPlan(k string) string { return keyPrefix + "idemplan:" + k }

// keySeen is a user's last-seen time (unix ms; "0" = never seen, cached).
func keySeen(uid uint64) string { return keyPrefix + "seen:" + u64(uid) }

// keyToken caches a user-center answer under the token's SHA-256.
func keyToken(sum string) string { return keyPrefix + "tok:" + sum }

// keyInstanceConns is a hash conn id → "uid|role|transport|connected ms"
// of one instance's connections: what a survivor cleans up after a crash.
func keyInstanceConns(instance string) string { return keyPrefix + "iconn:" + instance }

// keyAlive exists while its instance runs (refreshed every aliveEvery).
func keyAlive(instance string) string { return keyPrefix + "alive:" + instance }

// keyInstanceStats is a hash of an instance's own counts (conns, users).
func keyInstanceStats(instance string) string { return keyPrefix + "istats:" + instance }

// keySweep is held by the instance cleaning up after a dead one.
func keySweep(instance string) string { return keyPrefix + "sweep:" + instance }

// keyInstances is the set of instances that registered and were not yet
// cleaned up; keyOnline counts users with a connection anywhere.
const (
	keyInstances = keyPrefix + "instances"
	keyOnline    = keyPrefix + "online"
)

// Broadcast keys.
const (
	// keyBroadcastGen moves whenever a broadcast is sent, so cached
	// per-user broadcast counts know they are stale.
	keyBroadcastGen = keyPrefix + "bgen"
)

// keyBroadcastUnread caches a user's unread broadcasts per kind ("~gen").
func keyBroadcastUnread(uid uint64) string { return keyPrefix + "bunr:" + u64(uid) }

// keyBroadcastMark is the time (ms) before which broadcasts count as read
// for the user: the end of their previous session, or their last read-all.
func keyBroadcastMark(uid uint64) string { return keyPrefix + "bmark:" + u64(uid) }

// keySegments caches a user's API-set segments ("~" marks a loaded set).
func keySegments(uid uint64) string { return keyPrefix + "useg:" + u64(uid) }

// keyTokenGroups holds the groups of the user's latest token.
func keyTokenGroups(uid uint64) string { return keyPrefix + "ujwt:" + u64(uid) }

// keyBroadcastDedupe holds a broadcast id for 15 minutes under its key.
func keyBroadcastDedupe(k string) string { return keyPrefix + "bdup:" + k }

// keyFanoutLock is held while a broadcast is being fanned out;
// keyFanoutDone lists the instances it has reached (the checkpoint).
func keyFanoutLock(id uint64) string { return keyPrefix + "bfan:lock:" + u64(id) }
func keyFanoutDone(id uint64) string { return keyPrefix + "bfan:done:" + u64(id) }

// keyBroadcastFirst is the user's first broadcast mark (ms): broadcasts
// older than the user's first visit are not in their history.
func keyBroadcastFirst(uid uint64) string { return keyPrefix + "bfirst:" + u64(uid) }

// keyUnreadVersion moves with every count change and delivery of a user;
// keyInFlight is a sorted set of the user's message ids counted or pushed
// but not yet committed (score: when the mark lapses, unix ms). Together
// they keep a counter rebuild from racing a delivery.
func keyUnreadVersion(uid uint64) string { return keyPrefix + "uver:" + u64(uid) }
func keyInFlight(uid uint64) string      { return keyPrefix + "flying:" + u64(uid) }

// keyPurgeReset is the set of users whose unread rows a retention purge
// deleted and whose counters still have to be reset.
const keyPurgeReset = keyPrefix + "purge:reset"

// keyOccurrence claims one tick (unix minute) of a recurring broadcast.
func keyOccurrence(tmpl uint64, tick int64) string {
	return keyPrefix + "bocc:" + u64(tmpl) + ":" + strconv.FormatInt(tick, 10)
}

// keyOccurrenceRun remembers the occurrence one recurring run (an asynq
// task id) made, for its retries.
func keyOccurrenceRun(run string) string { return keyPrefix + "boccrun:" + run }

// keyBroadcastState is bumped whenever a user's segments, token groups,
// broadcast mark or broadcast reads change, so caches filled from a read
// that came before the change are not stored.
func keyBroadcastState(uid uint64) string { return keyPrefix + "bver:" + u64(uid) }
