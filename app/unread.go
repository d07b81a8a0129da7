package app

import (
	"context"
	"fmt"
	"slices"
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

// deliverScript runs a delivery's Redis side for a run of messages, in
// order, and returns one reply per message. For each it counts the message
// when the user's hash exists (incr "1"), marks its id in flight (mode
// "1": a delivery that counts and pushes before it commits) or clears that
// mark (mode "-1": one that committed first), and replies {unread hash or
// {}, the user's instance → connections hash, the user's cached broadcast
// counts, the broadcast generation}, so one round trip serves the marks,
// the counts, the routing and the unread frames of a whole task. Marking
// and reading the connections in one script is what lets a connect rely on
// settle (see Connect). KEYS: the broadcast generation, then per message
// unread, uconn, broadcast unread, version, in flight (deliverKeys). ARGV:
// per message kind, incr, mode, id (deliverArgs).
var deliverScript = newLuaScript(luaNow + luaMark + luaBump + `
local gen
local out = {}
for r = 0, #ARGV / 4 - 1 do
  local k, a = 1 + r * 5, r * 4
  local unread, uconn, bunread, version, flying = KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], KEYS[k+5]
  local kind, incr, mode, id = ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4]
  local o = {{}, {}, {}, 0}
  if mode == '1' then mark(flying, id) end
  local h = redis.call('HGETALL', unread)
  if #h > 0 and incr == '1' then -- count it: both fields in one HSET, the reply patched to match
    local ki, ui
    for i = 1, #h, 2 do
      if h[i] == kind then ki = i + 1 elseif h[i] == '` + fieldUnacked + `' then ui = i + 1 end
    end
    if not ki then h[#h + 1] = kind; h[#h + 1] = '0'; ki = #h end
    if not ui then h[#h + 1] = '` + fieldUnacked + `'; h[#h + 1] = '0'; ui = #h end
    h[ki] = tostring(tonumber(h[ki]) + 1)
    h[ui] = tostring(tonumber(h[ui]) + 1)
    redis.call('HSET', unread, kind, h[ki], '` + fieldUnacked + `', h[ui])
  end
  o[1] = h
  bump(version)
  if mode == '-1' then redis.call('ZREM', flying, id) end
  o[2] = redis.call('HGETALL', uconn)
  if #o[2] > 0 then
    o[3] = redis.call('HGETALL', bunread)
    if gen == nil then gen = tonumber(redis.call('GET', KEYS[1]) or '0') end
    o[4] = gen
  end
  out[#out + 1] = o
end
return out`)

// luaBump defines bump(key): the user's version moves on. The key lives
// versionTTL from when it was made: a version only has to hold still for
// the length of one rebuild, so refreshing it on every bump would be a
// write for nothing.
var luaBump = `local function bump(key)
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ` + strconv.FormatInt(versionTTL.Milliseconds(), 10) + `) end
end
`

// versionTTL is how long a user's version key lives.
const versionTTL = 24 * time.Hour

// scriptRun caps the messages (or users) one script call handles, so a
// large task does not hold Redis for long; the calls of a task go in one
// pipeline.
const scriptRun = 128

// deliverKeys appends message's keys for deliverScript (after the shared
// first key).
func deliverKeys(keys []string, uid uint64) []string {
	return append(keys, keyUnread(uid), keyUserConns(uid), keyBroadcastUnread(uid), keyUnreadVersion(uid), keyInFlight(uid))
}

// deliverArgs appends a message's arguments for deliverScript.
func deliverArgs(args []string, kind, incr, mode string, id uint64) []string {
	return append(args, kind, incr, mode, u64(id))
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
	order := make([]uint64, 0, len(uids))
	for i, u := range uids {
		if _, ok := byUser[u]; !ok {
			order = append(order, u)
		}
		byUser[u] = append(byUser[u], u64(ids[i]))
	}
	var execs []rueidis.LuaExec
	for run := range slices.Chunk(order, scriptRun) {
		e := rueidis.LuaExec{Keys: make([]string, 0, 2*len(run)), Args: make([]string, 0, 2*len(run))}
		for _, u := range run {
			e.Keys = append(e.Keys, keyInFlight(u), keyUnreadVersion(u))
			e.Args = append(e.Args, strconv.Itoa(len(byUser[u])))
		}
		for _, u := range run {
			e.Args = append(e.Args, byUser[u]...)
		}
		execs = append(execs, e)
	}
	for _, r := range clearScript.ExecMulti(context.WithoutCancel(ctx), a.Redis, execs...) {
		if err := r.Error(); err != nil {
			a.Log.Warn("clear in-flight marks", "err", err) // they lapse after inFlightTTL
		}
	}
}

// clearScript clears marks of several users. KEYS: per user in flight,
// version. ARGV: per user how many ids, then the users' ids in that order.
var clearScript = newLuaScript(luaBump + `
local users = #KEYS / 2
local at = users
for u = 1, users do
  local n = tonumber(ARGV[u])
  redis.call('ZREM', KEYS[2*u-1], unpack(ARGV, at + 1, at + n))
  bump(KEYS[2*u])
  at = at + n
end
return 1`)

// adjustScript adds the ARGV pairs (field, delta) to an existing hash and
// returns it, or returns {} when the hash is missing. It bumps the version
// either way, so a rebuild that read MySQL before this change is not
// cached. KEYS: unread, version.
var adjustScript = newLuaScript(luaBump + `
bump(KEYS[2])
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
		u.add(k, v)
	}
	return u
}

// add takes in one field of a counter hash.
func (u *Unread) add(k string, v int64) {
	switch {
	case k == fieldUnacked:
		u.Unacked = max(v, 0)
	case strings.HasPrefix(k, "~"):
	case v > 0:
		u.ByKind[k] = v
		u.Total += v
	}
}

// unreadFromReply is unreadFromHash for a counter hash in a script's
// reply; ok is false when the hash was missing.
func unreadFromReply(m rueidis.RedisMessage) (u Unread, ok bool) {
	u.ByKind = make(map[string]int64, 4)
	err := intPairs(m, func(k string, v int64) {
		ok = true
		u.add(k, v)
	})
	return u, ok && err == nil
}

// intPairs calls fn with each field and value of a hash reply: a flat
// array (as scripts return hashes) or a map.
func intPairs(m rueidis.RedisMessage, fn func(k string, v int64)) error {
	if m.IsMap() {
		h, err := m.AsIntMap()
		for k, v := range h {
			fn(k, v)
		}
		return err
	}
	arr, err := m.ToArray()
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(arr); i += 2 {
		k, err := arr[i].ToString()
		if err != nil {
			return err
		}
		v, err := arr[i+1].AsInt64()
		if err != nil {
			return fmt.Errorf("hash field %q: %w", k, err)
		}
		fn(k, v)
	}
	return nil
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
	execs := make([]rueidis.LuaExec, 0, len(uids))
	seen := make(map[uint64]bool, len(uids))
	for _, u := range uids {
		if !seen[u] {
			seen[u] = true
			execs = append(execs, rueidis.LuaExec{Keys: []string{keyUnread(u), keyUnreadVersion(u)}})
		}
	}
	for _, r := range resetScript.ExecMulti(ctx, a.Redis, execs...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// resetScript: KEYS: unread, version.
var resetScript = newLuaScript(luaBump + `
redis.call('DEL', KEYS[1])
bump(KEYS[2])
return 1`)
