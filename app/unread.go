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
// again, or miss one the delivery skipped counting): a delivery raises the
// user's in-flight count before it commits and, when it counts, lowers it
// and bumps the user's version; a rebuild is cached only if the version
// did not move since its SELECT and nothing is in flight.

// deliverScript counts a new message when the hash exists (ARGV[2]=="1"),
// moves the user's in-flight count by ARGV[3] ("1": raised before the
// commit, by a delivery that pushes first; "-1": lowered after it) and
// returns {unread hash or {}, the user's instance → connections hash, the
// user's cached broadcast counts, the broadcast generation}, so one round
// trip serves the count, the routing and the unread frame.
// KEYS: unread, uconn, broadcast unread, broadcast generation, version,
// in flight.
var deliverScript = newLuaScript(`
local out = {{}, {}, {}, 0}
if ARGV[3] == '1' then
  redis.call('INCR', KEYS[6])
  redis.call('PEXPIRE', KEYS[6], ` + strconv.FormatInt(inFlightTTL.Milliseconds(), 10) + `)
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[2] == '1' then
    redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
    redis.call('HINCRBY', KEYS[1], '` + fieldUnacked + `', 1)
  end
  out[1] = redis.call('HGETALL', KEYS[1])
end
redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], 86400000)
if ARGV[3] == '-1' and redis.call('DECR', KEYS[6]) <= 0 then redis.call('DEL', KEYS[6]) end
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
// it expires the user's counts are computed from MySQL but not cached.
const inFlightTTL = time.Minute

// settleWait bounds how long settle waits: an in-flight mark left by a
// dead worker lapses only after inFlightTTL.
const settleWait = 2 * time.Second

// inFlight reports whether uid has a delivery in flight.
func (a *App) inFlight(ctx context.Context, uid uint64) (bool, error) {
	n, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyInFlight(uid)).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read in-flight deliveries of %d: %w", uid, err)
	}
	return n > 0, nil
}

// settle waits until uid has no delivery in flight (pushed, perhaps not
// yet committed), or settleWait passed. busy reports whether anything was
// in flight when it was called.
func (a *App) settle(ctx context.Context, uid uint64) (busy bool, err error) {
	deadline := time.Now().Add(settleWait)
	for wait := 500 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		if now, err := a.inFlight(ctx, uid); err != nil || !now {
			return busy, err
		}
		busy = true
		if time.Now().After(deadline) {
			a.Log.Warn("deliveries still in flight, going on", "uid", uid, "waited", settleWait)
			return busy, nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return busy, ctx.Err()
		}
	}
}

// markInFlight raises the in-flight count of every user in uids.
func (a *App) markInFlight(ctx context.Context, uids []uint64) error {
	cmds := make(rueidis.Commands, 0, 2*len(uids))
	for _, u := range uids {
		cmds = append(cmds, a.Redis.B().Incr().Key(keyInFlight(u)).Build(),
			a.Redis.B().Pexpire().Key(keyInFlight(u)).Milliseconds(inFlightTTL.Milliseconds()).Build())
	}
	for _, r := range a.Redis.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("mark deliveries in flight: %w", err)
		}
	}
	return nil
}

// clearInFlight lowers the in-flight counts after a delivery that failed
// before counting (never below zero: a lapsed mark is gone already).
func (a *App) clearInFlight(ctx context.Context, uids []uint64) {
	execs := make([]rueidis.LuaExec, len(uids))
	for i, u := range uids {
		execs[i] = rueidis.LuaExec{Keys: []string{keyInFlight(u)}}
	}
	clearScript.ExecMulti(context.WithoutCancel(ctx), a.Redis, execs...)
}

var clearScript = newLuaScript(`
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
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
var fillScript = newLuaScript(`
local v0 = table.remove(ARGV, 1)
if redis.call('EXISTS', KEYS[1]) == 0 then
  if (redis.call('GET', KEYS[2]) or '0') ~= v0 or tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then
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
