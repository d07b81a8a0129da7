package broadcast

// Per-user broadcast state: segments, the read mark, and the broadcast part
// of a user's unread counts (docs/protocol.md "Read state").

import (
	"context"
	_ "embed"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/input"
	"github.com/pushdesk/pushdesk/internal/luascript"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// SetSegments replaces uid's API-set segments and refreshes the user's
// live connections.
func (s *Service) SetSegments(ctx context.Context, uid uint64, segs []string) error {
	if err := s.Repo.SetSegments(ctx, uid, segs); err != nil {
		return err
	}
	s.invalidateBroadcastState(ctx, uid, true)
	return s.Cluster.Push(ctx, uid, hub.Frame{Type: ControlSegments})
}

// invalidateBroadcastState drops uid's cached broadcast counts (and, with
// dropSegments, the cached API-set segments) and bumps the state version
// (see keyBroadcastState) so fills already under way are not stored.
func (s *Service) invalidateBroadcastState(ctx context.Context, uid uint64, dropSegments bool, extra ...rueidis.Completed) {
	keys := []string{KeyUnread(uid)}
	if dropSegments {
		keys = append(keys, keySegments(uid))
	}
	cmds := append(rueidis.Commands{
		s.Redis.B().Incr().Key(keyBroadcastState(uid)).Build(),
		s.Redis.B().Pexpire().Key(keyBroadcastState(uid)).Milliseconds((24 * time.Hour).Milliseconds()).Build(),
		s.Redis.B().Del().Key(keys...).Build(),
	}, extra...)
	s.Redis.DoMulti(ctx, cmds...)
}

var (
	//go:embed lua/fill_state.lua
	fillStateSrc    string
	fillStateScript = luascript.New(fillStateSrc)
)

// fillCache runs fillStateScript for key with version v0.
func (s *Service) fillCache(ctx context.Context, uid uint64, key, v0 string, ttl time.Duration, cmd string, args ...string) {
	argv := append([]string{v0, strconv.FormatInt(ttl.Milliseconds(), 10), cmd}, args...)
	fillStateScript.Exec(ctx, s.Redis, []string{key, keyBroadcastState(uid)}, argv)
}

func (s *Service) stateVersion(ctx context.Context, uid uint64) (string, error) {
	v, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(keyBroadcastState(uid)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "0", nil
	}
	return v, err
}

// ParseSegments validates a PUT /internal/v1/users/{uid}/segments body.
func ParseSegments(raw []byte) ([]string, error) {
	var b struct {
		Segments *[]string `json:"segments"`
	}
	if err := input.Object(raw, &b); err != nil {
		return nil, err
	}
	if b.Segments == nil {
		return nil, apierr.Invalid(`segments is required: {"segments":["authors",...]}`)
	}
	if len(*b.Segments) > maxSegments {
		return nil, apierr.Invalid("at most %d segments", maxSegments)
	}
	out := []string{}
	for i, s := range *b.Segments {
		if !segmentRE.MatchString(s) || s == "all" {
			return nil, apierr.Invalid(`segments[%d] must match [a-z0-9_.-]{1,64} and not be "all"`, i)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// SegmentsOf returns every segment uid belongs to: "all", the API-set
// ones and the groups of the user's latest token.
func (s *Service) SegmentsOf(ctx context.Context, uid uint64) ([]string, error) {
	res := s.Redis.DoMulti(ctx,
		s.Redis.B().Smembers().Key(keySegments(uid)).Build(),
		s.Redis.B().Get().Key(keyTokenGroups(uid)).Build())
	api, err := res[0].AsStrSlice()
	if err != nil {
		return nil, err
	}
	var groups []string
	if g, _ := res[1].ToString(); g != "" {
		groups = strings.Split(g, ",")
	}
	if !slices.Contains(api, "~") {
		v0, err := s.stateVersion(ctx, uid)
		if err != nil {
			return nil, err
		}
		if api, err = s.Repo.Segments(ctx, uid); err != nil {
			return nil, err
		}
		s.fillCache(ctx, uid, keySegments(uid), v0, 24*time.Hour, "SADD", append([]string{"~"}, api...)...)
	}
	out := []string{"all"}
	for _, s := range slices.Concat(api, groups) {
		if s != "~" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// RememberGroups stores the groups of the user's token (sorted, joined),
// for membership computed where the token is not at hand. Only a change
// of groups drops the cached broadcast counts: most connects change none.
func (s *Service) RememberGroups(ctx context.Context, uid uint64, groups []string) {
	sorted := slices.Sorted(slices.Values(groups))
	v := strings.Join(slices.Compact(sorted), ",")
	prev, err := s.Redis.Do(ctx, s.Redis.B().Set().Key(keyTokenGroups(uid)).Value(v).Get().
		Ex(s.ReleaseAfter).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		prev, err = "", nil
	}
	if err != nil || prev != v {
		s.invalidateBroadcastState(ctx, uid, false)
	}
}

// --- read state ---

// Mark returns the time before which broadcasts count as read
// for uid: the end of their previous session or their last read-all;
// for a user never seen, now (old broadcasts are not news to them).
func (s *Service) Mark(ctx context.Context, uid uint64) (time.Time, error) {
	v, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(keyBroadcastMark(uid)).Build()).ToString()
	if err == nil {
		ms, _ := strconv.ParseInt(v, 10, 64)
		return time.UnixMilli(ms), nil
	}
	if !rueidis.IsRedisNil(err) {
		return time.Time{}, err
	}
	seen, err := s.Activity.LastSeen(ctx, []uint64{uid})
	if err != nil {
		return time.Time{}, err
	}
	mark := seen[0]
	if mark.IsZero() {
		mark = s.Clock.Now()
	}
	s.SetMark(ctx, uid, mark)
	s.Redis.Do(ctx, s.Redis.B().Set().Key(keyBroadcastFirst(uid)).Value(strconv.FormatInt(mark.UnixMilli(), 10)).Nx().Ex(s.Retention+24*time.Hour).Build())
	return mark, nil
}

// HistoryStart is when uid's broadcast history begins: their
// first mark, or the retention cut-off when that is later or unknown.
func (s *Service) HistoryStart(ctx context.Context, uid uint64) time.Time {
	start := s.Clock.Now().Add(-s.Retention)
	if v, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(keyBroadcastFirst(uid)).Build()).ToString(); err == nil {
		if ms, _ := strconv.ParseInt(v, 10, 64); time.UnixMilli(ms).After(start) {
			start = time.UnixMilli(ms)
		}
	}
	return start
}

// AdvanceMark moves uid's read mark from from to to (later). When no
// broadcast was sent after from, the move changes no count, so the cached
// counts stay (a reconnect, the usual caller, then costs one write, not a
// recount).
func (s *Service) AdvanceMark(ctx context.Context, uid uint64, from, to time.Time) {
	gen, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(KeyGen).Build()).AsInt64()
	if err == nil || rueidis.IsRedisNil(err) {
		if newest, err := s.newestSent(ctx, gen); err == nil && !newest.After(from) {
			s.Redis.Do(ctx, s.Redis.B().Set().Key(keyBroadcastMark(uid)).Value(strconv.FormatInt(to.UnixMilli(), 10)).Ex(s.ReleaseAfter+24*time.Hour).Build())
			return
		}
	}
	s.SetMark(ctx, uid, to)
}

// SetMark moves uid's read mark to t.
func (s *Service) SetMark(ctx context.Context, uid uint64, t time.Time) {
	s.invalidateBroadcastState(ctx, uid, false,
		s.Redis.B().Set().Key(keyBroadcastMark(uid)).Value(strconv.FormatInt(t.UnixMilli(), 10)).Ex(s.ReleaseAfter+24*time.Hour).Build())
}

// Query is uid's unread-broadcast query.
func (s *Service) Query(ctx context.Context, uid uint64) (models.BroadcastQuery, error) {
	segs, err := s.SegmentsOf(ctx, uid)
	if err != nil {
		return models.BroadcastQuery{}, err
	}
	mark, err := s.Mark(ctx, uid)
	if err != nil {
		return models.BroadcastQuery{}, err
	}
	after := s.Clock.Now().Add(-s.Retention)
	if mark.After(after) {
		after = mark
	}
	return models.BroadcastQuery{UID: uid, Segments: segs, After: after, UnreadOnly: true}, nil
}

// Unread returns uid's unread broadcasts per kind, cached until
// a broadcast is sent or the user's state changes.
func (s *Service) Unread(ctx context.Context, uid uint64) (map[string]int64, error) {
	b, _, err := s.unreadGen(ctx, uid)
	return b, err
}

// unreadGen is Unread with the broadcast generation the
// counts reflect: every broadcast of that generation or older is in them.
func (s *Service) unreadGen(ctx context.Context, uid uint64) (map[string]int64, int64, error) {
	res := s.Redis.DoMulti(ctx,
		s.Redis.B().Get().Key(KeyGen).Build(),
		s.Redis.B().Hgetall().Key(KeyUnread(uid)).Build())
	gen, err := res[0].AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, 0, err
	}
	if h, err := res[1].AsIntMap(); err == nil && len(h) > 0 && h[FieldGen] == gen {
		delete(h, FieldGen)
		return h, gen, nil
	}
	v0, err := s.stateVersion(ctx, uid)
	if err != nil {
		return nil, 0, err
	}
	counts, err := s.count(ctx, uid, gen)
	if err != nil {
		return nil, 0, err
	}
	args := []string{FieldGen, strconv.FormatInt(gen, 10)}
	for k, n := range counts {
		args = append(args, k, strconv.FormatInt(n, 10))
	}
	s.fillCache(ctx, uid, KeyUnread(uid), v0, time.Hour, "HSET", args...)
	return counts, gen, nil
}

// AddTo adds uid's unread broadcasts to a personal snapshot.
func (s *Service) AddTo(ctx context.Context, uid uint64, u frames.Unread) (frames.Unread, error) {
	b, gen, err := s.unreadGen(ctx, uid)
	if err != nil {
		return u, err
	}
	addBroadcasts(&u, b)
	u.Gen = gen
	return u, nil
}

// addBroadcasts adds broadcast counts (fields starting with "~" skipped).
func addBroadcasts(u *frames.Unread, b map[string]int64) {
	for k, n := range b {
		AddCount(u, k, n)
	}
}

// AddCount adds one kind's broadcast count to u (a "~" field is skipped).
func AddCount(u *frames.Unread, kind string, n int64) {
	if n > 0 && kind[0] != '~' {
		u.ByKind[kind] += n
		u.Total += n
	}
}

// Read marks the broadcasts among ids read for uid.
func (s *Service) Read(ctx context.Context, uid uint64, ids []uint64) (int64, error) {
	kinds, err := s.Repo.BroadcastKinds(ctx, ids)
	if err != nil || len(kinds) == 0 {
		return 0, err
	}
	q, err := s.Query(ctx, uid)
	if err != nil {
		return 0, err
	}
	var mine []uint64
	list, err := s.Repo.ListBroadcasts(ctx, models.BroadcastQuery{UID: uid, Segments: q.Segments, After: q.After, UnreadOnly: true, Limit: 1000})
	if err != nil {
		return 0, err
	}
	for _, b := range list {
		if _, ok := kinds[b.ID]; ok {
			mine = append(mine, b.ID)
		}
	}
	n, err := s.Repo.ReadBroadcasts(ctx, uid, mine, time.Now())
	if err == nil && n > 0 {
		s.invalidateBroadcastState(ctx, uid, false)
	}
	return n, err
}

// count counts uid's unread broadcasts in MySQL, unless nothing was sent
// since the user's read mark (the usual case on a reconnect, and always
// for a user never seen, whose mark is now): then there is nothing to
// count, and a reconnect storm costs MySQL no query per connection here.
func (s *Service) count(ctx context.Context, uid uint64, gen int64) (map[string]int64, error) {
	mark, err := s.Mark(ctx, uid)
	if err != nil {
		return nil, err
	}
	newest, err := s.newestSent(ctx, gen)
	if err != nil {
		return nil, err
	}
	if !newest.After(mark) {
		return map[string]int64{}, nil
	}
	q, err := s.Query(ctx, uid)
	if err != nil {
		return nil, err
	}
	return s.Repo.CountBroadcasts(ctx, q)
}

// newest is when the newest broadcast of a generation or older was sent.
type newest struct {
	gen int64
	at  time.Time
}

// newestSent is when the newest broadcast sent at generation gen or
// before was sent: read from MySQL once per generation and instance (one
// query for all the callers that want it at once). A fan-out marks its
// broadcast sent before it moves the generation, so what is read after
// the generation was read includes every broadcast of that generation.
func (s *Service) newestSent(ctx context.Context, gen int64) (time.Time, error) {
	if n := s.newest.Load(); n != nil && n.gen == gen {
		return n.at, nil
	}
	v, err, _ := s.flight.Do(strconv.FormatInt(gen, 10), func() (any, error) {
		// Shared by every connect waiting for it: one that gives up must
		// not fail the others.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		at, err := s.Repo.NewestSent(qctx)
		if err != nil {
			return nil, err
		}
		// Any other generation is replaced: after Redis lost its data the
		// generation starts again from 0, so an older entry may carry a
		// higher number.
		s.newest.Store(&newest{gen: gen, at: at})
		return at, nil
	})
	if err != nil {
		return time.Time{}, err
	}
	return v.(time.Time), nil
}
