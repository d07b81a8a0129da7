package app

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
)

// testApp builds an App on a redis-server and a MySQL database of the
// test's own (both gone when it ends).
func testApp(t *testing.T) *App {
	t.Helper()
	redisURL := testsvc.Redis(t)
	dsn := testsvc.Database(t, "pushdesk_app_test")
	ctx := context.Background()
	db, err := models.Open(ctx, dsn, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Run(ctx, db); err != nil {
		t.Fatal(err)
	}
	db.Close()
	a, err := New(ctx, Config{RedisURL: redisURL, MySQLDSN: dsn, JWTSecret: "s", IngestKey: "k", MySQLMaxConns: 4},
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// A rebuild that runs while a delivery is between its commit and its
// count must not cache a hash the delivery then counts again.
func TestRebuildDoesNotRaceADelivery(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	const uid = 4242
	id := a.IDs.Next()
	if err := a.markInFlight(ctx, []uint64{uid}, []uint64{id}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := a.Repo.InsertMessages(ctx, []models.Message{{ID: id, ToUID: uid, Kind: "comment", Body: "{}", Count: 1, SortKey: id, CreatedAt: now, UpdatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	// A reader rebuilds now: MySQL already has the row.
	u, err := a.Unread(ctx, uid)
	if err != nil || u.Total != 1 {
		t.Fatalf("Unread during the delivery = %+v, %v; want total 1", u, err)
	}
	if n, _ := a.Redis.Do(ctx, a.Redis.B().Exists().Key(keyUnread(uid)).Build()).AsInt64(); n != 0 {
		t.Fatal("a rebuild was cached while a delivery was in flight")
	}
	// The delivery counts it (the hash is missing, so it is not added).
	if err := deliverScript.Exec(ctx, a.Redis, deliverKeys([]string{keyBroadcastGen}, uid), deliverArgs(nil, "comment", "1", "-1", id)).Error(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if u, err := a.Unread(ctx, uid); err != nil || u.Total != 1 || u.Unacked != 1 {
			t.Fatalf("Unread after the delivery = %+v, %v; want total 1, unacked 1", u, err)
		}
	}
	if n, _ := a.Redis.Do(ctx, a.Redis.B().Exists().Key(keyUnread(uid)).Build()).AsInt64(); n != 1 {
		t.Fatal("the rebuild after the delivery was not cached")
	}
	// The next delivery is counted on the cached hash.
	id2 := a.IDs.Next()
	if err := a.markInFlight(ctx, []uint64{uid}, []uint64{id2}); err != nil {
		t.Fatal(err)
	}
	_ = a.Repo.InsertMessages(ctx, []models.Message{{ID: id2, ToUID: uid, Kind: "mail", Body: "{}", Count: 1, SortKey: id2, CreatedAt: now, UpdatedAt: now}})
	if err := deliverScript.Exec(ctx, a.Redis, deliverKeys([]string{keyBroadcastGen}, uid), deliverArgs(nil, "mail", "1", "-1", id2)).Error(); err != nil {
		t.Fatal(err)
	}
	if u, _ := a.Unread(ctx, uid); u.Total != 2 || u.ByKind["mail"] != 1 {
		t.Fatalf("Unread = %+v, want total 2 with one mail", u)
	}
}

// A delivery that counts before it commits: a rebuild whose SELECT ran
// before the commit must not be cached, even when the mark is cleared
// before the rebuild stores its result.
func TestRebuildDoesNotRaceACountFirstDelivery(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	const uid = 4343
	id := a.IDs.Next()
	// The hash is missing, so the script marks but cannot count.
	if err := deliverScript.Exec(ctx, a.Redis, deliverKeys([]string{keyBroadcastGen}, uid), deliverArgs(nil, "comment", "1", "1", id)).Error(); err != nil {
		t.Fatal(err)
	}
	v0, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyUnreadVersion(uid)).Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	// A rebuild reads version v0 and counts MySQL (nothing yet) ...
	now := time.Now().UTC()
	if err := a.Repo.InsertMessages(ctx, []models.Message{{ID: id, ToUID: uid, Kind: "comment", Body: "{}", Count: 1, SortKey: id, CreatedAt: now, UpdatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	a.clearInFlight(ctx, []uint64{uid}, []uint64{id}) // ... the delivery commits and clears ...
	// ... and only then tries to store its stale zero.
	h, err := fillScript.Exec(ctx, a.Redis, []string{keyUnread(uid), keyUnreadVersion(uid), keyInFlight(uid)},
		[]string{v0, fieldExists, "1", fieldUnacked, "0"}).AsIntMap()
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 0 {
		t.Fatalf("a rebuild from before the commit was cached: %v", h)
	}
	if u, err := a.Unread(ctx, uid); err != nil || u.Total != 1 {
		t.Fatalf("Unread = %+v, %v; want total 1", u, err)
	}
}

// A mark left by a dead worker lapses on its own: reads stop waiting for
// it and rebuilds are cached again, however busy the user stays.
func TestLapsedMarkIsIgnored(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	const uid = 4444
	past := float64(time.Now().Add(-time.Second).UnixMilli())
	if err := a.Redis.Do(ctx, a.Redis.B().Zadd().Key(keyInFlight(uid)).ScoreMember().ScoreMember(past, "123").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	fresh := a.IDs.Next()
	if err := a.markInFlight(ctx, []uint64{uid}, []uint64{fresh}); err != nil {
		t.Fatal(err)
	}
	got, err := a.flying(ctx, uid, nil)
	if err != nil || len(got) != 1 || got[0] != u64(fresh) {
		t.Fatalf("flying = %v, %v; want only the fresh mark %d", got, err, fresh)
	}
	a.clearInFlight(ctx, []uint64{uid}, []uint64{fresh})
	start := time.Now()
	if busy, err := a.settle(ctx, uid); err != nil || busy {
		t.Fatalf("settle = %v, %v; want nothing to wait for", busy, err)
	}
	if busy, err := a.settle(ctx, uid, 123); err != nil || busy {
		t.Fatalf("settle for the lapsed id = %v, %v; want nothing to wait for", busy, err)
	}
	if time.Since(start) > settleWait/2 {
		t.Fatal("settle waited for a lapsed mark")
	}
	if _, err := a.Unread(ctx, uid); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Redis.Do(ctx, a.Redis.B().Exists().Key(keyUnread(uid)).Build()).AsInt64(); n != 1 {
		t.Fatal("a lapsed mark kept the rebuild from being cached")
	}
}

// A task's messages share script calls (scriptRun at a time): counts,
// marks and their clearing must come out as if each ran alone, across
// call boundaries and for a user who gets several messages in one task.
func TestDeliverCountsEveryMessageOfALargeTask(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	const users = 150
	var uids []uint64
	for i := range users {
		uid := uint64(9000 + i)
		uids = append(uids, uid)
		if i%2 == 0 { // half have a cached hash (counted in Redis), half do not (rebuilt from MySQL)
			if u, err := a.Unread(ctx, uid); err != nil || u.Total != 0 {
				t.Fatalf("Unread(%d) = %+v, %v", uid, u, err)
			}
		}
	}
	// Every user twice (once per delivery), a third time for every third user.
	d1 := &Delivery{Kind: "comment", Body: []byte(`{}`), At: time.Now().UnixMilli()}
	d2 := &Delivery{Kind: "mail", Body: []byte(`{}`), At: time.Now().UnixMilli()}
	d3 := &Delivery{Kind: "mail", Body: []byte(`{}`), At: time.Now().UnixMilli()}
	for i, uid := range uids {
		d1.UIDs, d1.IDs = append(d1.UIDs, uid), append(d1.IDs, a.IDs.Next())
		d2.UIDs, d2.IDs = append(d2.UIDs, uid), append(d2.IDs, a.IDs.Next())
		if i%3 == 0 {
			d3.UIDs, d3.IDs = append(d3.UIDs, uid), append(d3.IDs, a.IDs.Next())
		}
	}
	if n := len(d1.UIDs) + len(d2.UIDs) + len(d3.UIDs); n <= 2*scriptRun {
		t.Fatalf("the task has %d messages; it should need three script calls", n)
	}
	if err := a.Deliver(ctx, []*Delivery{d1, d2, d3}, false); err != nil {
		t.Fatal(err)
	}
	for i, uid := range uids {
		wantMail := int64(1)
		if i%3 == 0 {
			wantMail = 2
		}
		u, err := a.Unread(ctx, uid)
		if err != nil || u.ByKind["comment"] != 1 || u.ByKind["mail"] != wantMail || u.Total != 1+wantMail || u.Unacked != 1+wantMail {
			t.Fatalf("user %d (hash cached: %v): Unread = %+v, %v; want 1 comment, %d mail", uid, i%2 == 0, u, err, wantMail)
		}
		if left, err := a.flying(ctx, uid, nil); err != nil || len(left) != 0 {
			t.Fatalf("user %d still has marks %v (%v) after the commit", uid, left, err)
		}
		assertVersionExpires(t, a, uid)
	}
	// A reset of a user never seen before makes a version that expires too.
	if err := a.resetUnread(ctx, 8999); err != nil {
		t.Fatal(err)
	}
	assertVersionExpires(t, a, 8999)
}

// assertVersionExpires fails unless uid's version key exists with a TTL.
func assertVersionExpires(t *testing.T, a *App, uid uint64) {
	t.Helper()
	ms, err := a.Redis.Do(context.Background(), a.Redis.B().Pttl().Key(keyUnreadVersion(uid)).Build()).AsInt64()
	if err != nil || ms <= 0 || ms > versionTTL.Milliseconds() {
		t.Fatalf("version of %d has PTTL %d (%v), want (0, %d]", uid, ms, err, versionTTL.Milliseconds())
	}
}

// Deliveries that come back under a new task (asynq recovering an
// aggregation set whose task was already made) are recounted, not added
// again: twice delivered, once counted.
func TestRecountedDeliveriesAreCountedOnce(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	const uid = 7501
	if u, err := a.Unread(ctx, uid); err != nil || u.Total != 0 {
		t.Fatalf("Unread = %+v, %v; want 0 (and cached)", u, err)
	}
	d := &Delivery{Kind: "comment", Body: []byte(`{}`), At: time.Now().UnixMilli(), UIDs: []uint64{uid, uid}, IDs: []uint64{a.IDs.Next(), a.IDs.Next()}}
	for range 2 {
		if err := a.Deliver(ctx, []*Delivery{d}, true); err != nil {
			t.Fatal(err)
		}
		if u, err := a.Unread(ctx, uid); err != nil || u.Total != 2 || u.Unacked != 2 {
			t.Fatalf("Unread = %+v, %v; want 2", u, err)
		}
	}
}
