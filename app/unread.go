package app

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// unreadTTL bounds how long a counter hash lives without a rebuild, so any
// drift between cache and shard heals by itself.
const unreadTTL = 24 * 3600

// The unread hash is a cache of the shard: it is only changed while it
// exists, and a missing hash is rebuilt from MySQL. A rebuild must not
// race a delivery (its SELECT could see a row the delivery then counts
// again, or miss one the delivery counts before committing): a delivery
// marks its message id in flight before it counts and commits, bumps the
// user's version when it counts and again when it clears the mark after
// the commit; a rebuild is cached only if the version did not move since
// its SELECT and nothing is in flight. A mark is a member of a sorted set
// scored by when it lapses (inFlightTTL), so a mark left by a dead worker
// lapses on its own, and clearing (ZREM) can be repeated safely.

// luaNow is Lua for the Redis server's time in unix ms, the clock every
// in-flight mark is scored against.
const luaNow = `local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)
`

// deliverScript counts a new message when the hash exists (ARGV[2]=="1"),
// marks message id ARGV[4] in flight (ARGV[3]=="1": a delivery that
// counts and pushes before it commits) or clears that mark (ARGV[3]=="-1":
// one that committed first), and returns {unread hash or {}, the user's
// instance → connections hash, the user's cached broadcast counts, the
// broadcast generation}, so one round trip serves the mark, the count, the
// routing and the unread frame. Marking and reading the connections in
// one script is what lets a connect rely on settle (see Connect).
// KEYS: unread, uconn, broadcast unread, broadcast generation, version,
// in flight.
var deliverScript = newLuaScript(luaNow + luaMark + `
local out = {{}, {}, {}, 0}
if ARGV[3] == '1' then mark(KEYS[6], ARGV[4]) end
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[2] == '1' then
    redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
    redis.call('HINCRBY', KEYS[1], '` + fieldUnacked + `', 1)
  end
  out[1] = redis.call('HGETALL', KEYS[1])
end
redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], 86400000)
if ARGV[3] == '-1' then redis.call('ZREM', KEYS[6], ARGV[4]) end
out[2] = redis.call('HGETALL', KEYS[2])
if #out[2] > 0 then
  out[3] = redis.call('HGETALL', KEYS[3])
  out[4] = tonumber(redis.call('GET', KEYS[4]) or '0')
end
return out`)

func deliverKeys(uid uint64) []string {
	return []string{keyUnread(uid), keyUserConns(uid), keyBroadcastUnread(uid), keyBroadcastGen, keyUnreadVersion(uid), keyInFlight(uid)}
}

// inFlightTTL bounds an in-flight mark left by a worker that died: until
// it lapses the user's counts are computed from MySQL but not cached, and
// reads of the user wait for it up to settleWait.
const inFlightTTL = time.Minute

// settleWait bounds how long settle waits for marks to clear.
const settleWait = 2 * time.Second

// maxSettleIDs caps the marks a settle for all of a user's waits for
// (the newest; older ones commit first).
const maxSettleIDs = 100

// flyingScript returns which of ARGV (message ids, at most MaxRecipients)
// are in flight now; given none, the user's newest maxSettleIDs marks.
// KEYS: in flight.
var flyingScript = newLuaScript(luaNow + `
if #ARGV == 0 then
  return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', now, 'LIMIT', 0, ` + strconv.Itoa(maxSettleIDs) + `)
end
local out = {}
local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV))
for i, sc in ipairs(scores) do
  if sc and tonumber(sc) > now then out[#out + 1] = ARGV[i] end
end
return out`)

// flying returns which of ids (all of uid's when ids is empty) are in
// flight: pushed or counted, not yet committed.
func (a *App) flying(ctx context.Context, uid uint64, ids []string) ([]string, error) {
	out, err := flyingScript.Exec(ctx, a.Redis, []string{keyInFlight(uid)}, ids).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("read in-flight deliveries of %d: %w", uid, err)
	}
	return out, nil
}

// settle waits until the given message ids of uid (all of uid's in flight
// now when ids is empty) are committed, or settleWait passed. Marks added
// later are not waited for, so a user receiving a steady stream is not
// held up. busy reports whether there was anything to wait for.
func (a *App) settle(ctx context.Context, uid uint64, ids ...uint64) (busy bool, err error) {
	var want []string
	for _, id := range ids {
		want = append(want, u64(id))
	}
	deadline := time.Now().Add(settleWait)
	for wait := 500 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		left, err := a.flying(ctx, uid, want)
		if err != nil || len(left) == 0 {
			return busy, err
		}
		busy, want = true, left
		if time.Now().After(deadline) {
			a.Log.Warn("deliveries still in flight, going on", "uid", uid, "ids", len(left), "waited", settleWait)
			return busy, nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return busy, ctx.Err()
		}
	}
}

// markInFlight marks message ids[i] of uids[i] in flight.
func (a *App) markInFlight(ctx context.Context, uids, ids []uint64) error {
	execs := make([]rueidis.LuaExec, len(uids))
	for i, u := range uids {
		execs[i] = rueidis.LuaExec{Keys: []string{keyInFlight(u)}, Args: []string{u64(ids[i])}}
	}
	for _, r := range markScript.ExecMulti(ctx, a.Redis, execs...) {
		if err := r.Error(); err != nil {
			a.clearInFlight(ctx, uids, ids)
			return fmt.Errorf("mark deliveries in flight: %w", err)
		}
	}
	return nil
}

// markScript: KEYS: in flight. ARGV: message id.
var markScript = newLuaScript(luaNow + luaMark + `
mark(KEYS[1], ARGV[1])
return 1`)

// luaMark defines mark(key, id): id in flight until inFlightTTL from now,
// the key's lapsed marks pruned. Needs luaNow before it.
var luaMark = `local function mark(key, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, now + ` + strconv.FormatInt(inFlightTTL.Milliseconds(), 10) + `, id)
  redis.call('PEXPIRE', key, ` + strconv.FormatInt(inFlightTTL.Milliseconds(), 10) + `)
end
`

// clearInFlight clears the marks of message ids[i] of uids[i] (marks
// that lapsed or were never made are no-ops) and bumps each user's
// version, so a rebuild whose SELECT ran before the commit is not cached.
func (a *App) clearInFlight(ctx context.Context, uids, ids []uint64) {
	byUser := make(map[uint64][]string, len(uids))
	for i, u := range uids {
		byUser[u] = append(byUser[u], u64(ids[i]))
	}
	execs := make([]rueidis.LuaExec, 0, len(byUser))
	for u, ms := range byUser {
		execs = append(execs, rueidis.LuaExec{Keys: []string{keyInFlight(u), keyUnreadVersion(u)}, Args: ms})
	}
	for _, r := range clearScript.ExecMulti(context.WithoutCancel(ctx), a.Redis, execs...) {
		if err := r.Error(); err != nil {
			a.Log.Warn("clear in-flight marks", "err", err) // they lapse after inFlightTTL
		}
	}
}

// clearScript: KEYS: in flight, version. ARGV: message ids.
var clearScript = newLuaScript(`
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
return 1`)

// adjustScript adds the ARGV pairs (field, delta) to an existing hash and
// returns it, or returns {} when the hash is missing. It bumps the version
// either way, so a rebuild that read MySQL before this change is not
// cached. KEYS: unread, version.
var adjustScript = newLuaScript(`
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i+1]) end
return redis.call('HGETALL', KEYS[1])`)

// fillScript stores a rebuilt hash unless one appeared meanwhile or a
// delivery moved (see above), and returns what is there ({} if nothing:
// the caller then uses its own rebuild). KEYS: unread, version, in
// flight. ARGV: the version read before the SELECT, then field, value...
var fillScript = newLuaScript(luaNow + `
local v0 = table.remove(ARGV, 1)
if redis.call('EXISTS', KEYS[1]) == 0 then
  if (redis.call('GET', KEYS[2]) or '0') ~= v0 or redis.call('ZCOUNT', KEYS[3], now, '+inf') > 0 then
    return {}
  end
  redis.call('HSET', KEYS[1], unpack(ARGV))
  redis.call('EXPIRE', KEYS[1], ` + strconv.Itoa(unreadTTL) + `)
end
return redis.call('HGETALL', KEYS[1])`)

// unreadFromHash turns the counter hash into a snapshot.
func unreadFromHash(h map[string]int64) Unread {
	u := Unread{ByKind: make(map[string]int64, len(h))}
	for k, v := range h {
		switch {
		case k == fieldUnacked:
			u.Unacked = max(v, 0)
		case strings.HasPrefix(k, "~"):
		case v > 0:
			u.ByKind[k] = v
			u.Total += v
		}
	}
	return u
}

// Unread returns uid's unread snapshot: their own messages (from the
// counter cache, rebuilt from the shard when missing) plus the broadcasts
// they have not read.
func (a *App) Unread(ctx context.Context, uid uint64) (Unread, error) {
	u, err := a.personalUnread(ctx, uid)
	if err != nil {
		return u, err
	}
	return a.withBroadcasts(ctx, uid, u)
}

func (a *App) personalUnread(ctx context.Context, uid uint64) (Unread, error) {
	h, err := a.Redis.Do(ctx, a.Redis.B().Hgetall().Key(keyUnread(uid)).Build()).AsIntMap()
	if err != nil {
		return Unread{}, fmt.Errorf("read unread of %d: %w", uid, err)
	}
	if _, ok := h[fieldExists]; ok {
		return unreadFromHash(h), nil
	}
	return a.rebuildUnread(ctx, uid)
}

func (a *App) rebuildUnread(ctx context.Context, uid uint64) (Unread, error) {
	v0, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyUnreadVersion(uid)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		v0, err = "0", nil
	}
	if err != nil {
		return Unread{}, fmt.Errorf("read unread version of %d: %w", uid, err)
	}
	byKind, unacked, err := a.Repo.UnreadCounts(ctx, uid)
	if err != nil {
		return Unread{}, err
	}
	args := []string{v0, fieldExists, "1", fieldUnacked, strconv.FormatInt(unacked, 10)}
	for k, n := range byKind {
		args = append(args, k, strconv.FormatInt(n, 10))
	}
	h, err := fillScript.Exec(ctx, a.Redis, []string{keyUnread(uid), keyUnreadVersion(uid), keyInFlight(uid)}, args).AsIntMap()
	if err != nil {
		return Unread{}, fmt.Errorf("store unread of %d: %w", uid, err)
	}
	if len(h) == 0 { // a delivery is in flight: answer from MySQL, cache nothing
		return Unread{Total: sum(byKind), ByKind: byKind, Unacked: unacked}, nil
	}
	return unreadFromHash(h), nil
}

func sum(m map[string]int64) int64 {
	var t int64
	for _, n := range m {
		t += n
	}
	return t
}

// adjustUnread applies deltas to uid's counters and returns the personal
// snapshot afterwards (rebuilt if the cache was missing).
func (a *App) adjustUnread(ctx context.Context, uid uint64, byKind map[string]int64, unacked int64) (Unread, error) {
	args := make([]string, 0, 2*len(byKind)+2)
	for k, n := range byKind {
		args = append(args, k, strconv.FormatInt(-n, 10))
	}
	if unacked != 0 {
		args = append(args, fieldUnacked, strconv.FormatInt(-unacked, 10))
	}
	if len(args) == 0 {
		return a.personalUnread(ctx, uid)
	}
	h, err := adjustScript.Exec(ctx, a.Redis, []string{keyUnread(uid), keyUnreadVersion(uid)}, args).AsIntMap()
	if err != nil {
		return Unread{}, fmt.Errorf("adjust unread of %d: %w", uid, err)
	}
	if len(h) == 0 {
		return a.rebuildUnread(ctx, uid)
	}
	return unreadFromHash(h), nil
}

// resetUnread drops uid's cache so the next read rebuilds it from MySQL,
// and bumps the version so a rebuild already under way is not cached.
func (a *App) resetUnread(ctx context.Context, uids ...uint64) error {
	cmds := make(rueidis.Commands, 0, 2*len(uids))
	for _, u := range uids {
		cmds = append(cmds, a.Redis.B().Del().Key(keyUnread(u)).Build(), a.Redis.B().Incr().Key(keyUnreadVersion(u)).Build())
	}
	for _, r := range a.Redis.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}
