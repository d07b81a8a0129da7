package activity

import (
	"context"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/pushdesk/pushdesk/internal/clock"
)

func routeOf(t *testing.T, a *Service, uid uint64) Route {
	t.Helper()
	r, err := a.Routes(context.Background(), []uint64{uid})
	if err != nil {
		t.Fatal(err)
	}
	return r[0]
}

// The in-process fast-route cache must never hold a user on the fast
// route past last seen + ActiveWithin, must not hold slow verdicts, and
// must give up a verdict after fastCacheTTL.
func TestFastRouteCache(t *testing.T) {
	a := testService(t)
	ctx := context.Background()
	defer a.Clock.Reset()

	t.Run("expires exactly when the user stops being active", func(t *testing.T) {
		uid := uint64(9001)
		a.cacheSeen(ctx, uid, a.Clock.Now().Add(-a.Policy.ActiveWithin+2*time.Second))
		if r := routeOf(t, a, uid); r != RouteFast {
			t.Fatalf("route = %v, want fast", r)
		}
		a.Clock.Advance(3 * time.Second) // well inside fastCacheTTL
		defer a.Clock.Reset()
		if r := routeOf(t, a, uid); r != RouteDelayed {
			t.Fatalf("route after ActiveWithin = %v, want delayed", r)
		}
	})
	t.Run("a slow verdict is not kept", func(t *testing.T) {
		uid := uint64(9002)
		a.cacheSeen(ctx, uid, a.Clock.Now().Add(-48*time.Hour))
		if r := routeOf(t, a, uid); r != RouteDelayed {
			t.Fatalf("route = %v, want delayed", r)
		}
		a.Touch(ctx, uid) // the user connects
		if r := routeOf(t, a, uid); r != RouteFast {
			t.Fatalf("route after connecting = %v, want fast", r)
		}
	})
	t.Run("a verdict lives at most fastCacheTTL", func(t *testing.T) {
		uid := uint64(9003) // never seen: fast
		if r := routeOf(t, a, uid); r != RouteFast {
			t.Fatalf("route = %v, want fast", r)
		}
		// Last seen going backwards (restored older from MySQL) is
		// overlooked for at most fastCacheTTL.
		a.cacheSeen(ctx, uid, a.Clock.Now().Add(-48*time.Hour))
		if r := routeOf(t, a, uid); r != RouteFast {
			t.Fatalf("route within the TTL = %v, want the cached fast", r)
		}
		a.Clock.Advance(fastCacheTTL + time.Second)
		defer a.Clock.Reset()
		if r := routeOf(t, a, uid); r != RouteDelayed {
			t.Fatalf("route after the TTL = %v, want delayed", r)
		}
	})
	t.Run("a full shard is emptied, not grown", func(t *testing.T) {
		var c fastCache
		until := time.Now().Add(time.Minute)
		for i := range uint64(fastShardCap + 10) {
			c.put(i*fastCacheShards, until) // all in shard 0
		}
		if n := len(c.shards[0].until); n > fastShardCap {
			t.Fatalf("shard holds %d entries, cap %d", n, fastShardCap)
		}
		if !c.has(uint64(fastShardCap+9)*fastCacheShards, time.Now()) {
			t.Fatal("the latest entry is missing")
		}
	})
}

// A last seen read from MySQL (which lags) never replaces a fresher one a
// connect cached meanwhile.
func TestFillSeenKeepsAFresherValue(t *testing.T) {
	a := testService(t)
	ctx := context.Background()
	const uid = 77
	a.Touch(ctx, uid)
	a.fillSeen(ctx, uid, time.Now().Add(-30*24*time.Hour))
	seen, err := a.LastSeen(ctx, []uint64{uid})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(seen[0]) > time.Minute {
		t.Fatalf("last seen = %v, want the connect's (now)", seen[0])
	}
}

// testService tracks activity on a Redis and a MySQL of the test's own,
// with the default policy.
func testService(t *testing.T) *Service {
	t.Helper()
	rc, _ := apptest.Redis(t)
	s := New(Deps{Redis: rc, Repo: apptest.Repo(t), Clock: new(clock.Clock), Log: apptest.Log(),
		Metrics: metrics.New(func() (int, int) { return 0, 0 }),
		Policy:  Policy{ActiveWithin: 24 * time.Hour, ReleaseAfter: 15 * 24 * time.Hour}})
	t.Cleanup(s.Close)
	return s
}
