package app

// Per-user broadcast state: segments, the read mark, and the broadcast part
// of a user's unread counts (docs/protocol.md "Read state").

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// SetSegments replaces uid's API-set segments and refreshes the user's
// live connections.
func (a *App) SetSegments(ctx context.Context, uid uint64, segs []string) error {
	if err := a.Repo.SetSegments(ctx, uid, segs); err != nil {
		return err
	}
	a.invalidateBroadcastState(ctx, uid, true)
	return a.pushToUser(ctx, uid, hub.Frame{Type: ctlSegments})
}

// invalidateBroadcastState drops uid's cached broadcast counts (and, with
// dropSegments, the cached API-set segments) and bumps the state version
// (see keyBroadcastState) so fills already under way are not stored.
func (a *App) invalidateBroadcastState(ctx context.Context, uid uint64, dropSegments bool, extra ...rueidis.Completed) {
	keys := []string{keyBroadcastUnread(uid)}
	if dropSegments {
		keys = append(keys, keySegments(uid))
	}
	cmds := append(rueidis.Commands{
		a.Redis.B().Incr().Key(keyBroadcastState(uid)).Build(),
		a.Redis.B().Pexpire().Key(keyBroadcastState(uid)).Milliseconds((24 * time.Hour).Milliseconds()).Build(),
		a.Redis.B().Del().Key(keys...).Build(),
	}, extra...)
	a.Redis.DoMulti(ctx, cmds...)
}

// fillStateScript stores a set or hash (KEYS[1]) with a TTL unless the state
// version (KEYS[2]) moved from ARGV[1]. ARGV: version, ttl ms, the write
// command (SADD or HSET), then its arguments.
var fillStateScript = newLuaScript(`
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call(ARGV[3], KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

// fillCache runs fillStateScript for key with version v0.
func (a *App) fillCache(ctx context.Context, uid uint64, key, v0 string, ttl time.Duration, cmd string, args ...string) {
	argv := append([]string{v0, strconv.FormatInt(ttl.Milliseconds(), 10), cmd}, args...)
	fillStateScript.Exec(ctx, a.Redis, []string{key, keyBroadcastState(uid)}, argv)
}

func (a *App) stateVersion(ctx context.Context, uid uint64) (string, error) {
	v, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyBroadcastState(uid)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "0", nil
	}
	return v, err
}

// ctlSegments is an internal frame type: "this user's segments changed".
// It is consumed by the instance, never sent to a client.
const ctlSegments = "~seg"

// ParseSegments validates a PUT /internal/v1/users/{uid}/segments body.
func ParseSegments(raw []byte) ([]string, error) {
	var b struct {
		Segments *[]string `json:"segments"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, Errorf(400, "invalid_json", "body is not a JSON object: %v", err)
	}
	if b.Segments == nil {
		return nil, Invalid(`segments is required: {"segments":["authors",...]}`)
	}
	if len(*b.Segments) > maxSegments {
		return nil, Invalid("at most %d segments", maxSegments)
	}
	out := []string{}
	for i, s := range *b.Segments {
		if !segmentRE.MatchString(s) || s == "all" {
			return nil, Invalid(`segments[%d] must match [a-z0-9_.-]{1,64} and not be "all"`, i)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// segmentsOf returns every segment uid belongs to: "all", the API-set
// ones and the groups of the user's latest token.
func (a *App) segmentsOf(ctx context.Context, uid uint64) ([]string, error) {
	res := a.Redis.DoMulti(ctx,
		a.Redis.B().Smembers().Key(keySegments(uid)).Build(),
		a.Redis.B().Get().Key(keyTokenGroups(uid)).Build())
	api, err := res[0].AsStrSlice()
	if err != nil {
		return nil, err
	}
	var groups []string
	if g, _ := res[1].ToString(); g != "" {
		groups = strings.Split(g, ",")
	}
	if !slices.Contains(api, "~") {
		v0, err := a.stateVersion(ctx, uid)
		if err != nil {
			return nil, err
		}
		if api, err = a.Repo.Segments(ctx, uid); err != nil {
			return nil, err
		}
		a.fillCache(ctx, uid, keySegments(uid), v0, 24*time.Hour, "SADD", append([]string{"~"}, api...)...)
	}
	out := []string{"all"}
	for _, s := range slices.Concat(api, groups) {
		if s != "~" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// rememberGroups stores the groups of the user's token (sorted, joined),
// for membership computed where the token is not at hand. Only a change
// of groups drops the cached broadcast counts: most connects change none.
func (a *App) rememberGroups(ctx context.Context, uid uint64, groups []string) {
	sorted := slices.Sorted(slices.Values(groups))
	v := strings.Join(slices.Compact(sorted), ",")
	prev, err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keyTokenGroups(uid)).Value(v).Get().
		Ex(a.Cfg.ReleaseAfter).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		prev, err = "", nil
	}
	if err != nil || prev != v {
		a.invalidateBroadcastState(ctx, uid, false)
	}
}

// refreshSegments reloads the segments of uid's clients on this instance
// and, since joining or leaving a segment changes which broadcasts count,
// sends each of them the user's counts (segment changes are rare).
func (a *App) refreshSegments(uid uint64) {
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	segs, err := a.segmentsOf(ctx, uid)
	if err != nil {
		a.Log.Warn("refresh segments", "uid", uid, "err", err)
		return
	}
	a.Hub.EachOf(uid, func(c *hub.Client) { c.SetSegments(segs) })
	u, err := a.Unread(ctx, uid)
	if err != nil {
		a.Log.Warn("counts after a segment change", "uid", uid, "err", err)
		return
	}
	f := unreadFrameOf(u)
	a.Hub.EachOf(uid, func(c *hub.Client) { c.Send(f) })
}

// --- read state ---

// broadcastMark returns the time before which broadcasts count as read
// for uid: the end of their previous session or their last read-all;
// for a user never seen, now (old broadcasts are not news to them).
func (a *App) broadcastMark(ctx context.Context, uid uint64) (time.Time, error) {
	v, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyBroadcastMark(uid)).Build()).ToString()
	if err == nil {
		ms, _ := strconv.ParseInt(v, 10, 64)
		return time.UnixMilli(ms), nil
	}
	if !rueidis.IsRedisNil(err) {
		return time.Time{}, err
	}
	seen, err := a.LastSeen(ctx, []uint64{uid})
	if err != nil {
		return time.Time{}, err
	}
	mark := seen[0]
	if mark.IsZero() {
		mark = a.Clock.Now()
	}
	a.setBroadcastMark(ctx, uid, mark)
	a.Redis.Do(ctx, a.Redis.B().Set().Key(keyBroadcastFirst(uid)).Value(strconv.FormatInt(mark.UnixMilli(), 10)).Nx().Ex(a.Cfg.Retention+24*time.Hour).Build())
	return mark, nil
}

// broadcastHistoryStart is when uid's broadcast history begins: their
// first mark, or the retention cut-off when that is later or unknown.
func (a *App) broadcastHistoryStart(ctx context.Context, uid uint64) time.Time {
	start := a.Clock.Now().Add(-a.Cfg.Retention)
	if v, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyBroadcastFirst(uid)).Build()).ToString(); err == nil {
		if ms, _ := strconv.ParseInt(v, 10, 64); time.UnixMilli(ms).After(start) {
			start = time.UnixMilli(ms)
		}
	}
	return start
}

func (a *App) setBroadcastMark(ctx context.Context, uid uint64, t time.Time) {
	a.invalidateBroadcastState(ctx, uid, false,
		a.Redis.B().Set().Key(keyBroadcastMark(uid)).Value(strconv.FormatInt(t.UnixMilli(), 10)).Ex(a.Cfg.ReleaseAfter+24*time.Hour).Build())
}

// broadcastQuery is uid's unread-broadcast query.
func (a *App) broadcastQuery(ctx context.Context, uid uint64) (models.BroadcastQuery, error) {
	segs, err := a.segmentsOf(ctx, uid)
	if err != nil {
		return models.BroadcastQuery{}, err
	}
	mark, err := a.broadcastMark(ctx, uid)
	if err != nil {
		return models.BroadcastQuery{}, err
	}
	after := a.Clock.Now().Add(-a.Cfg.Retention)
	if mark.After(after) {
		after = mark
	}
	return models.BroadcastQuery{UID: uid, Segments: segs, After: after, UnreadOnly: true}, nil
}

// broadcastUnread returns uid's unread broadcasts per kind, cached until
// a broadcast is sent or the user's state changes.
func (a *App) broadcastUnread(ctx context.Context, uid uint64) (map[string]int64, error) {
	b, _, err := a.broadcastUnreadGen(ctx, uid)
	return b, err
}

// broadcastUnreadGen is broadcastUnread with the broadcast generation the
// counts reflect: every broadcast of that generation or older is in them.
func (a *App) broadcastUnreadGen(ctx context.Context, uid uint64) (map[string]int64, int64, error) {
	res := a.Redis.DoMulti(ctx,
		a.Redis.B().Get().Key(keyBroadcastGen).Build(),
		a.Redis.B().Hgetall().Key(keyBroadcastUnread(uid)).Build())
	gen, err := res[0].AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, 0, err
	}
	if h, err := res[1].AsIntMap(); err == nil && len(h) > 0 && h[fieldBroadcastGen] == gen {
		delete(h, fieldBroadcastGen)
		return h, gen, nil
	}
	v0, err := a.stateVersion(ctx, uid)
	if err != nil {
		return nil, 0, err
	}
	q, err := a.broadcastQuery(ctx, uid)
	if err != nil {
		return nil, 0, err
	}
	counts, err := a.Repo.CountBroadcasts(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	args := []string{fieldBroadcastGen, strconv.FormatInt(gen, 10)}
	for k, n := range counts {
		args = append(args, k, strconv.FormatInt(n, 10))
	}
	a.fillCache(ctx, uid, keyBroadcastUnread(uid), v0, time.Hour, "HSET", args...)
	return counts, gen, nil
}

// withBroadcasts adds uid's unread broadcasts to a personal snapshot.
func (a *App) withBroadcasts(ctx context.Context, uid uint64, u Unread) (Unread, error) {
	b, gen, err := a.broadcastUnreadGen(ctx, uid)
	if err != nil {
		return u, err
	}
	addBroadcasts(&u, b)
	u.gen = gen
	return u, nil
}

// addBroadcasts adds broadcast counts (fields starting with "~" skipped).
func addBroadcasts(u *Unread, b map[string]int64) {
	for k, n := range b {
		addBroadcast(u, k, n)
	}
}

// addBroadcast adds one kind's broadcast count (a "~" field is skipped).
func addBroadcast(u *Unread, kind string, n int64) {
	if n > 0 && kind[0] != '~' {
		u.ByKind[kind] += n
		u.Total += n
	}
}

// readBroadcasts marks the broadcasts among ids read for uid.
func (a *App) readBroadcasts(ctx context.Context, uid uint64, ids []uint64) (int64, error) {
	kinds, err := a.Repo.BroadcastKinds(ctx, ids)
	if err != nil || len(kinds) == 0 {
		return 0, err
	}
	q, err := a.broadcastQuery(ctx, uid)
	if err != nil {
		return 0, err
	}
	var mine []uint64
	list, err := a.Repo.ListBroadcasts(ctx, models.BroadcastQuery{UID: uid, Segments: q.Segments, After: q.After, UnreadOnly: true, Limit: 1000})
	if err != nil {
		return 0, err
	}
	for _, b := range list {
		if _, ok := kinds[b.ID]; ok {
			mine = append(mine, b.ID)
		}
	}
	n, err := a.Repo.ReadBroadcasts(ctx, uid, mine, time.Now())
	if err == nil && n > 0 {
		a.invalidateBroadcastState(ctx, uid, false)
	}
	return n, err
}
