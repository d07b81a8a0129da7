package activity

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/batch"
	"github.com/pushdesk/pushdesk/internal/clock"
	"github.com/pushdesk/pushdesk/internal/rkey"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// keySeen is a user's last-seen time (unix ms; "0" = never seen, cached):
// the only Redis key this package owns.
func keySeen(uid uint64) string { return rkey.User(uid, "seen") }

// Deps is what the service needs; every field is required.
type Deps struct {
	Redis   rueidis.Client
	Repo    *models.Repo
	Clock   *clock.Clock
	Log     *slog.Logger
	Metrics *metrics.Metrics
	Policy  Policy
}

// Service tracks activity. Safe for concurrent use.
type Service struct {
	Deps
	fast     fastCache
	lastSeen *batch.Batcher[models.LastSeen]
}

// New starts the last-seen batch writer (see Close).
func New(d Deps) *Service {
	s := &Service{Deps: d}
	s.lastSeen = batch.New(batch.Config{MaxBatch: 1000, Flushers: 1}, batch.Retrying(d.Repo.UpsertLastSeen, func(rows int, err error) {
		s.Log.Error("async write failed", "what", "last seen", "rows", rows, "err", err)
		s.Metrics.Errors.WithLabelValues("last seen").Inc()
	}))
	return s
}

// Close flushes the last-seen writer.
func (s *Service) Close() { s.lastSeen.Close() }

// Route is where a message for a user goes, by how recently they were seen.
type Route int

// Routes (seed 002): active or never-seen users get the fast queue, users
// away for a while the delayed (batched, lower-priority) queue, and users
// gone for longer than ReleaseAfter get nothing stored.
const (
	RouteFast Route = iota
	RouteDelayed
	RouteReleased
)

// neverSeenTTL caches "never seen" so unknown users do not cost a MySQL
// query on every message.
const neverSeenTTL = time.Hour

// Policy is when a user counts as active, and when as gone.
type Policy struct {
	// ActiveWithin: users seen more recently (or never seen) get the fast
	// queue. ReleaseAfter: messages for users not seen for longer are
	// released (not stored).
	ActiveWithin, ReleaseAfter time.Duration
}

// RouteFor decides the route for a user last seen at seen (zero: never)
// at time now.
func (c Policy) RouteFor(seen, now time.Time) Route {
	if seen.IsZero() {
		return RouteFast
	}
	switch age := now.Sub(seen); {
	case age <= c.ActiveWithin:
		return RouteFast
	case age <= c.ReleaseAfter:
		return RouteDelayed
	default:
		return RouteReleased
	}
}

// Routes returns the route of each uid. Users known to be fast (see
// fastCache) cost no Redis round trip.
func (s *Service) Routes(ctx context.Context, uids []uint64) ([]Route, error) {
	now := s.Clock.Now()
	out := make([]Route, len(uids))
	var ask []uint64
	var askAt []int
	for i, u := range uids {
		if !s.fast.has(u, now) {
			ask, askAt = append(ask, u), append(askAt, i)
		}
	}
	if len(ask) == 0 {
		return out, nil // all RouteFast
	}
	seen, err := s.LastSeen(ctx, ask)
	if err != nil {
		return nil, err
	}
	for j, u := range ask {
		r := s.Policy.RouteFor(seen[j], now)
		out[askAt[j]] = r
		if r == RouteFast {
			until := now.Add(fastCacheTTL)
			if !seen[j].IsZero() {
				until = minTime(until, seen[j].Add(s.Policy.ActiveWithin))
			}
			s.fast.put(u, until)
		}
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// fastCache remembers, per process, users routed fast and until when the
// verdict holds. A user leaves the fast route only by time passing (last
// seen only moves forward), so a verdict is exact until last seen +
// ActiveWithin; fastCacheTTL only bounds how long an odd last seen (one
// restored older from MySQL) can be overlooked. Only fast verdicts are
// kept: a delayed or released user who connects must route fast at once.
// Hot recipients, the bulk of ingest, then cost no Redis round trip on the
// request path.
type fastCache struct {
	shards [fastCacheShards]fastShard
}

const (
	fastCacheShards = 32
	fastCacheTTL    = 10 * time.Second
	// fastShardCap bounds a shard (~4 MiB of entries in all); a full
	// shard is emptied, so the cost is a round trip, never memory.
	fastShardCap = 4096
)

type fastShard struct {
	mu    sync.Mutex
	until map[uint64]int64 // unix ns
}

func (c *fastCache) shard(uid uint64) *fastShard { return &c.shards[uid%fastCacheShards] }

func (c *fastCache) has(uid uint64, now time.Time) bool {
	s := c.shard(uid)
	s.mu.Lock()
	until, ok := s.until[uid]
	s.mu.Unlock()
	return ok && now.UnixNano() < until
}

func (c *fastCache) put(uid uint64, until time.Time) {
	s := c.shard(uid)
	s.mu.Lock()
	if s.until == nil || len(s.until) >= fastShardCap {
		s.until = make(map[uint64]int64, 64)
	}
	s.until[uid] = until.UnixNano()
	s.mu.Unlock()
}

// LastSeen returns each uid's last-seen time (zero when never seen), from
// Redis, falling back to the user_last_seen table.
func (s *Service) LastSeen(ctx context.Context, uids []uint64) ([]time.Time, error) {
	keys := make([]string, len(uids))
	for i, u := range uids {
		keys[i] = keySeen(u)
	}
	// rueidis.MGet sends one MGET per cluster slot (one in all on a
	// single Redis): MGET of several users' keys is refused on a cluster.
	vals, err := rueidis.MGet(s.Redis, ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read last seen: %w", err)
	}
	out := make([]time.Time, len(uids))
	var missing []uint64
	missingAt := map[uint64][]int{}
	for i, k := range keys {
		v := vals[k]
		s, err := v.ToString()
		if err != nil { // nil: not cached
			missing = append(missing, uids[i])
			missingAt[uids[i]] = append(missingAt[uids[i]], i)
			continue
		}
		if ms, _ := strconv.ParseInt(s, 10, 64); ms > 0 {
			out[i] = time.UnixMilli(ms)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	rows, err := s.Repo.LastSeen(ctx, missing)
	if err != nil {
		return nil, err
	}
	found := make(map[uint64]time.Time, len(rows))
	for _, r := range rows {
		found[r.UID] = r.LastSeen
	}
	for _, u := range missing {
		t, ok := found[u]
		for _, i := range missingAt[u] {
			out[i] = t
		}
		if ok {
			s.fillSeen(ctx, u, t)
		} else {
			s.Redis.Do(ctx, s.Redis.B().Set().Key(keySeen(u)).Value("0").Nx().Ex(neverSeenTTL).Build())
		}
	}
	return out, nil
}

func (s *Service) cacheSeen(ctx context.Context, uid uint64, t time.Time) {
	s.Redis.Do(ctx, s.Redis.B().Set().Key(keySeen(uid)).Value(strconv.FormatInt(t.UnixMilli(), 10)).Ex(s.seenTTL()).Build())
}

// fillSeen caches a last seen read from MySQL, unless a fresher one was
// cached meanwhile: MySQL's copy is written in batches and lags, and an
// old value put back over a connect's would route the user as away (or
// release their messages) until their next touch.
func (s *Service) fillSeen(ctx context.Context, uid uint64, t time.Time) {
	s.Redis.Do(ctx, s.Redis.B().Set().Key(keySeen(uid)).Value(strconv.FormatInt(t.UnixMilli(), 10)).Nx().Ex(s.seenTTL()).Build())
}

func (s *Service) seenTTL() time.Duration { return s.Policy.ReleaseAfter + 24*time.Hour }

// Touch records that uid is active now (connect, disconnect,
// heartbeat): in Redis at once, in MySQL through the batch writer.
func (s *Service) Touch(ctx context.Context, uid uint64) {
	now := s.Clock.Now().UTC()
	s.cacheSeen(ctx, uid, now)
	if !s.lastSeen.Add(models.LastSeen{UID: uid, LastSeen: now}) {
		s.Metrics.Errors.WithLabelValues("last seen dropped").Inc() // Redis still has it
	}
}

// SeenEvery throttles heartbeat updates of last seen per connection.
const SeenEvery = time.Minute
