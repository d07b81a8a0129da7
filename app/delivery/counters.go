package delivery

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/app/broadcast"
	"github.com/pushdesk/pushdesk/app/cluster"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/internal/luascript"
	"github.com/pushdesk/pushdesk/internal/rkey"
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

// deliverScript runs a delivery's Redis side for a run of messages, in
// order, and returns one reply per message. For each it counts the message
// when the user's hash exists (incr "1"), marks its id in flight (mode
// "1": a delivery that counts and pushes before it commits) or clears that
// mark (mode "-1": one that committed first), and replies {unread hash or
// {}, the user's instance → connections hash, the user's cached broadcast
// counts, the broadcast generation, 1 if the message is not to be pushed
// again (a retry after one that already repeated the push)}, so one round
// trip serves the marks,
// the counts, the routing and the unread frames of a whole task. Marking
// and reading the connections in one script is what lets a connect rely on
// Settle (see Connect). KEYS: the broadcast generation, then per message
// unread, uconn, broadcast unread, version, in flight, repushed
// (deliverKeys). ARGV:
// per message kind, incr, mode, id (deliverArgs).
//
// On a cluster a call holds the messages of one slot (rkey.Runs) and
// leaves the generation out of KEYS (it lives in another slot): the
// script then replies -1 for it and the caller reads it after the script
// (genReader), which can only make cached counts look stale, never
// current when they are not.
var deliverScript = script(luaDeliver, fnNow, fnMark, fnBump)

// versionTTL is how long a user's version key lives.
const versionTTL = 24 * time.Hour

// scriptRun caps the messages (or users) one script call handles, so a
// large task does not hold Redis for long; the calls of a task go in one
// pipeline.
const scriptRun = 128

// deliverKeys appends message's keys for deliverScript (after the shared
// first key, if any: firstKeys).
func deliverKeys(keys []string, uid uint64) []string {
	return append(keys, keyUnread(uid), cluster.KeyUserConns(uid), broadcast.KeyUnread(uid), keyUnreadVersion(uid), keyInFlight(uid), keyRepushed(uid))
}

// firstKeys is the shared first key of a deliverScript call: the
// broadcast generation, on a single Redis only (see deliverScript).
func (s *Service) firstKeys(n int) []string {
	if s.cluster() {
		return make([]string, 0, 6*n)
	}
	return append(make([]string, 0, 1+6*n), broadcast.KeyGen)
}

// cluster reports whether Redis is a cluster: scripts then take the keys
// of one slot each.
func (s *Service) cluster() bool { return s.Redis.Mode() == rueidis.ClientModeCluster }

// genReader returns a func that reads the broadcast generation once, on
// its first call, for deliverScript replies that left it out (-1). It is
// called after the scripts ran, so a broadcast sent before them is seen.
// A failed read answers -2, which matches no cached counts.
func (s *Service) genReader(ctx context.Context) func() int64 {
	var gen *int64
	return func() int64 {
		if gen == nil {
			g, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(broadcast.KeyGen).Build()).AsInt64()
			if rueidis.IsRedisNil(err) {
				g, err = 0, nil
			}
			if err != nil {
				g = -2
			}
			gen = &g
		}
		return *gen
	}
}

// deliverArgs appends a message's arguments for deliverScript.
func deliverArgs(args []string, kind, incr, mode string, id uint64) []string {
	return append(args, kind, incr, mode, u64(id))
}

// inFlightTTL bounds an in-flight mark left by a worker that died: until
// it lapses the user's counts are computed from MySQL but not cached, and
// reads of the user wait for it up to SettleWait and then record it as
// read late. It outlives what brings a dead worker's task back (asynq's
// lease and recovery, about 90 s) and the longest gap between retries
// (64 s), so a read-all any time before the late commit still covers it
// and a retry still knows the message was pushed. (The Lua holds it as
// 300000 ms: lua/fn_mark.lua, lua/deliver.lua.)
const inFlightTTL = 5 * time.Minute

// SettleWait bounds how long Settle waits for marks to clear.
const SettleWait = 2 * time.Second

// maxSettleIDs caps the marks a settle for all of a user's waits for
// (the newest; older ones commit first).
const maxSettleIDs = 100

// flyingScript returns which of ARGV (message ids, at most MaxRecipients)
// are in flight now; given none, the user's newest maxSettleIDs marks.
// KEYS: in flight.
var flyingScript = script(luaFlying, fnNow)

// Flying returns which of ids (all of uid's when ids is empty) are in
// flight: pushed or counted, not yet committed.
func (s *Service) Flying(ctx context.Context, uid uint64, ids []string) ([]string, error) {
	out, err := flyingScript.Exec(ctx, s.Redis, []string{keyInFlight(uid)}, ids).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("read in-flight deliveries of %d: %w", uid, err)
	}
	return out, nil
}

// Settle waits until the given message ids of uid (all of uid's in flight
// now when ids is empty) are committed, or SettleWait passed. Marks added
// later are not waited for, so a user receiving a steady stream is not
// held up. busy reports whether there was anything to wait for.
func (s *Service) Settle(ctx context.Context, uid uint64, ids ...uint64) (busy bool, err error) {
	var want []string
	for _, id := range ids {
		want = append(want, u64(id))
	}
	deadline := time.Now().Add(SettleWait)
	for wait := 500 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		left, err := s.Flying(ctx, uid, want)
		if err != nil || len(left) == 0 {
			return busy, err
		}
		busy, want = true, left
		if time.Now().After(deadline) {
			s.Log.Warn("deliveries still in flight, going on", "uid", uid, "ids", len(left), "waited", SettleWait)
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
func (s *Service) markInFlight(ctx context.Context, uids, ids []uint64) error {
	execs := make([]rueidis.LuaExec, len(uids))
	for i, u := range uids {
		execs[i] = rueidis.LuaExec{Keys: []string{keyInFlight(u)}, Args: []string{u64(ids[i])}}
	}
	for _, r := range markScript.ExecMulti(ctx, s.Redis, execs...) {
		if err := r.Error(); err != nil {
			s.clearInFlight(ctx, uids, ids)
			return fmt.Errorf("mark deliveries in flight: %w", err)
		}
	}
	return nil
}

// markScript: KEYS: in flight. ARGV: message id.
var markScript = script(luaMark, fnNow, fnMark)

// clearInFlight clears the marks of message ids[i] of uids[i] (marks
// that lapsed or were never made are no-ops) and bumps each user's
// version, so a rebuild whose SELECT ran before the commit is not cached.
// It returns the ids among them that a read of their user gave up waiting
// for (see ReadLate): after a commit, those are marked read.
func (s *Service) clearInFlight(ctx context.Context, uids, msgIDs []uint64) map[uint64][]uint64 {
	byUser := make(map[uint64][]string, len(uids))
	order := make([]uint64, 0, len(uids))
	for i, u := range uids {
		if _, ok := byUser[u]; !ok {
			order = append(order, u)
		}
		byUser[u] = append(byUser[u], u64(msgIDs[i]))
	}
	var execs []rueidis.LuaExec
	for _, run := range rkey.Runs(len(order), scriptRun, s.cluster(), func(i int) string { return keyInFlight(order[i]) }) {
		e := rueidis.LuaExec{Keys: make([]string, 0, 3*len(run)), Args: make([]string, 0, 2*len(run))}
		for _, i := range run {
			u := order[i]
			e.Keys = append(e.Keys, keyInFlight(u), keyUnreadVersion(u), keyReadLate(u))
			e.Args = append(e.Args, strconv.Itoa(len(byUser[u])))
		}
		for _, i := range run {
			e.Args = append(e.Args, byUser[order[i]]...)
		}
		execs = append(execs, e)
	}
	owner := make(map[uint64]uint64, len(msgIDs))
	for i, id := range msgIDs {
		owner[id] = uids[i]
	}
	var late map[uint64][]uint64
	for _, r := range clearScript.ExecMulti(context.WithoutCancel(ctx), s.Redis, execs...) {
		found, err := r.AsStrSlice()
		if err != nil {
			s.Log.Warn("clear in-flight marks", "err", err) // they lapse after inFlightTTL
			continue
		}
		for _, v := range found {
			if id, err := strconv.ParseUint(v, 10, 64); err == nil {
				if late == nil {
					late = make(map[uint64][]uint64)
				}
				late[owner[id]] = append(late[owner[id]], id)
			}
		}
	}
	return late
}

// ReadLate records that a read of uid gave up waiting for the commit of
// message ids (still in flight after SettleWait: a slow commit, or a
// worker that died and whose task will be retried). The delivery that
// commits one of them later marks it read then (see clearInFlight), so a
// read-all is not undone by a message stored after it.
func (s *Service) ReadLate(ctx context.Context, uid uint64, msgIDs []string) error {
	if len(msgIDs) == 0 {
		return nil
	}
	key := keyReadLate(uid)
	for _, r := range s.Redis.DoMulti(ctx,
		s.Redis.B().Sadd().Key(key).Member(msgIDs...).Build(),
		s.Redis.B().Expire().Key(key).Seconds(int64(readLateTTL/time.Second)).Build()) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("record late reads of %d: %w", uid, err)
		}
	}
	return nil
}

// readLateTTL outlives a delivery task's retries (they end within about
// 40 minutes) with room to spare.
const readLateTTL = 25 * time.Hour

// markLate marks read the messages a read gave up waiting for, now that
// they are committed, and sends their users fresh counts.
func (s *Service) markLate(ctx context.Context, late map[uint64][]uint64) {
	for uid, msgIDs := range late {
		if _, err := s.Repo.MarkRead(ctx, uid, msgIDs); err != nil {
			s.Log.Warn("mark late reads", "uid", uid, "err", err) // they stay unread: the user reads them again
			continue
		}
		if err := s.Reset(ctx, uid); err != nil {
			continue
		}
		if u, err := s.Unread(ctx, uid); err == nil {
			_ = s.Cluster.Push(ctx, uid, frames.UnreadFrame(u))
		}
	}
}

// clearScript clears marks of several users (of one slot, on a cluster:
// see clearInFlight). KEYS: per user in flight,
// version, late reads. ARGV: per user how many ids, then the users' ids in
// that order. It returns the ids found among the user's late reads.
var clearScript = script(luaClear, fnBump)

// adjustScript adds the ARGV pairs (field, delta) to an existing hash and
// returns it, or returns {} when the hash is missing. It bumps the version
// either way, so a rebuild that read MySQL before this change is not
// cached. KEYS: unread, version.
var adjustScript = script(luaAdjust, fnBump)

// fillScript stores a rebuilt hash unless one appeared meanwhile or a
// delivery moved (see above), and returns what is there ({} if nothing:
// the caller then uses its own rebuild). KEYS: unread, version, in
// flight. ARGV: the version read before the SELECT, then field, value...
var fillScript = script(luaFill, fnNow)

// unreadFromHash turns the counter hash into a snapshot.
func unreadFromHash(h map[string]int64) frames.Unread {
	u := frames.Unread{ByKind: make(map[string]int64, len(h))}
	for k, v := range h {
		addField(&u, k, v)
	}
	return u
}

// addField takes in one field of a counter hash.
func addField(u *frames.Unread, k string, v int64) {
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
func unreadFromReply(m rueidis.RedisMessage) (u frames.Unread, ok bool) {
	u.ByKind = make(map[string]int64, 4)
	err := luascript.IntPairs(m, func(k string, v int64) {
		ok = true
		addField(&u, k, v)
	})
	return u, ok && err == nil
}

// frames.Unread returns uid's unread snapshot: their own messages (from the
// counter cache, rebuilt from the shard when missing) plus the broadcasts
// they have not read.
func (s *Service) Unread(ctx context.Context, uid uint64) (frames.Unread, error) {
	u, err := s.Personal(ctx, uid)
	if err != nil {
		return u, err
	}
	return s.Broadcasts.AddTo(ctx, uid, u)
}

func (s *Service) Personal(ctx context.Context, uid uint64) (frames.Unread, error) {
	h, err := s.Redis.Do(ctx, s.Redis.B().Hgetall().Key(keyUnread(uid)).Build()).AsIntMap()
	if err != nil {
		return frames.Unread{}, fmt.Errorf("read unread of %d: %w", uid, err)
	}
	if _, ok := h[fieldExists]; ok {
		return unreadFromHash(h), nil
	}
	return s.rebuildUnread(ctx, uid)
}

func (s *Service) rebuildUnread(ctx context.Context, uid uint64) (frames.Unread, error) {
	v0, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(keyUnreadVersion(uid)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		v0, err = "0", nil
	}
	if err != nil {
		return frames.Unread{}, fmt.Errorf("read unread version of %d: %w", uid, err)
	}
	byKind, unacked, err := s.Repo.UnreadCounts(ctx, uid)
	if err != nil {
		return frames.Unread{}, err
	}
	args := []string{v0, fieldExists, "1", fieldUnacked, strconv.FormatInt(unacked, 10)}
	for k, n := range byKind {
		args = append(args, k, strconv.FormatInt(n, 10))
	}
	h, err := fillScript.Exec(ctx, s.Redis, []string{keyUnread(uid), keyUnreadVersion(uid), keyInFlight(uid)}, args).AsIntMap()
	if err != nil {
		return frames.Unread{}, fmt.Errorf("store unread of %d: %w", uid, err)
	}
	if len(h) == 0 { // a delivery is in flight: answer from MySQL, cache nothing
		return frames.Unread{Total: sum(byKind), ByKind: byKind, Unacked: unacked}, nil
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

// Adjust applies deltas to uid's counters and returns the personal
// snapshot afterwards (rebuilt if the cache was missing).
func (s *Service) Adjust(ctx context.Context, uid uint64, byKind map[string]int64, unacked int64) (frames.Unread, error) {
	args := make([]string, 0, 2*len(byKind)+2)
	for k, n := range byKind {
		args = append(args, k, strconv.FormatInt(-n, 10))
	}
	if unacked != 0 {
		args = append(args, fieldUnacked, strconv.FormatInt(-unacked, 10))
	}
	if len(args) == 0 {
		return s.Personal(ctx, uid)
	}
	h, err := adjustScript.Exec(ctx, s.Redis, []string{keyUnread(uid), keyUnreadVersion(uid)}, args).AsIntMap()
	if err != nil {
		return frames.Unread{}, fmt.Errorf("adjust unread of %d: %w", uid, err)
	}
	if len(h) == 0 {
		return s.rebuildUnread(ctx, uid)
	}
	return unreadFromHash(h), nil
}

// Reset drops uid's cache so the next read rebuilds it from MySQL,
// and bumps the version so a rebuild already under way is not cached.
func (s *Service) Reset(ctx context.Context, uids ...uint64) error {
	execs := make([]rueidis.LuaExec, 0, len(uids))
	seen := make(map[uint64]bool, len(uids))
	for _, u := range uids {
		if !seen[u] {
			seen[u] = true
			execs = append(execs, rueidis.LuaExec{Keys: []string{keyUnread(u), keyUnreadVersion(u)}})
		}
	}
	for _, r := range resetScript.ExecMulti(ctx, s.Redis, execs...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// resetScript: KEYS: unread, version.
var resetScript = script(luaReset, fnBump)
