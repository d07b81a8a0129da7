package broadcast

import (
	"context"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/pushdesk/pushdesk/internal/clock"
	"github.com/pushdesk/pushdesk/models"
)

func recurringTemplate(t *testing.T, a *Service, spec string) uint64 {
	t.Helper()
	tmpl := &models.Broadcast{ID: a.IDs.Next(), Segment: "all", Kind: "system", Body: "{}",
		Status: models.BroadcastRecurring, Cron: spec, CreatedAt: time.Now().UTC()}
	if err := a.Repo.InsertBroadcast(context.Background(), tmpl); err != nil {
		t.Fatal(err)
	}
	return tmpl.ID
}

// steadyClock moves a's clock to 5 s past hh:10 of the next hour, so a
// test's runs do not straddle a minute or an hour by chance.
func steadyClock(a *Service) {
	now := a.Clock.Now().UTC()
	a.Clock.Advance(now.Truncate(time.Hour).Add(time.Hour + 10*time.Minute + 5*time.Second).Sub(now))
}

func occurrencesOf(t *testing.T, a *Service, tmpl uint64) int {
	t.Helper()
	var n int
	if err := a.Repo.DB.NewSelect().TableExpr("broadcasts").ColumnExpr("COUNT(*)").Where("parent_id = ?", tmpl).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A recurring run whose enqueue failed is retried; when the retry lands in
// the next minute it must send the occurrence it made, not make another.
func TestOccurrenceRetryInTheNextMinuteReusesItsOccurrence(t *testing.T) {
	a := testService(t)
	ctx := context.Background()
	steadyClock(a)
	tmpl := recurringTemplate(t, a, "* * * * *")
	first, err := a.NewOccurrence(ctx, tmpl, "run-a")
	if err != nil || first == 0 {
		t.Fatalf("first attempt = %d, %v", first, err)
	}
	// Another instance's run for the same minute takes nothing new.
	if id, err := a.NewOccurrence(ctx, tmpl, "run-b"); err != nil || id != first {
		t.Fatalf("another run in the same minute = %d, %v; want %d", id, err, first)
	}
	a.Clock.Advance(time.Minute)
	for _, run := range []string{"run-a", "run-b"} {
		again, err := a.NewOccurrence(ctx, tmpl, run)
		if err != nil || again != first {
			t.Fatalf("%s retried in the next minute = %d, %v; want %d", run, again, err, first)
		}
	}
	if n := occurrencesOf(t, a, tmpl); n != 1 {
		t.Fatalf("%d occurrences stored, want 1", n)
	}
	// Once it is sent, the retry has nothing more to do.
	if _, err := a.Repo.MarkBroadcastSent(ctx, first, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	if id, err := a.NewOccurrence(ctx, tmpl, "run-a"); err != nil || id != 0 {
		t.Fatalf("retry after the send = %d, %v; want none", id, err)
	}
	// A new run in a new minute makes the next occurrence.
	if id, err := a.NewOccurrence(ctx, tmpl, "run-c"); err != nil || id == 0 || id == first {
		t.Fatalf("next minute's run = %d, %v; want a new occurrence", id, err)
	}
}

// A run that claimed its occurrence and died before storing it stores it
// on its retry, under the claimed id.
func TestOccurrenceRetryStoresWhatItClaimed(t *testing.T) {
	a := testService(t)
	ctx := context.Background()
	steadyClock(a)
	tmpl := recurringTemplate(t, a, "* * * * *")
	claimed := a.IDs.Next()
	if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keyOccurrenceRun(tmpl, "run-d")).Value(ids.Format(claimed)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	id, err := a.NewOccurrence(ctx, tmpl, "run-d")
	if err != nil || id != claimed {
		t.Fatalf("retry = %d, %v; want the claimed %d", id, err, claimed)
	}
	b, err := a.Repo.GetBroadcast(ctx, claimed)
	if err != nil || b.Status != models.BroadcastScheduled || b.ParentID != tmpl {
		t.Fatalf("stored occurrence = %+v, %v", b, err)
	}
}

// An hourly broadcast's run retried later in the hour, even one that
// failed before it claimed anything, belongs to the hour's tick.
func TestOccurrenceOfAnHourlyBroadcastIsClaimedByItsTick(t *testing.T) {
	a := testService(t)
	ctx := context.Background()
	steadyClock(a)
	tmpl := recurringTemplate(t, a, "0 * * * *")
	first, err := a.NewOccurrence(ctx, tmpl, "run-e")
	if err != nil || first == 0 {
		t.Fatalf("first = %d, %v", first, err)
	}
	a.Clock.Advance(2 * time.Minute)
	if id, err := a.NewOccurrence(ctx, tmpl, "run-f"); err != nil || id != first {
		t.Fatalf("another run two minutes on = %d, %v; want %d", id, err, first)
	}
	if n := occurrencesOf(t, a, tmpl); n != 1 {
		t.Fatalf("%d occurrences stored, want 1", n)
	}
}

func TestOccurrenceTick(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	minute := func(s string) int64 { return at(s).Unix() / 60 }
	for _, c := range []struct{ spec, now, want string }{
		{"0 * * * *", "2026-11-22T12:00:30Z", "2026-11-22T12:00:00Z"},
		{"0 * * * *", "2026-11-22T12:59:59Z", "2026-11-22T12:00:00Z"},
		{"* * * * *", "2026-11-22T12:07:10Z", "2026-11-22T12:07:00Z"},
		{"30 9 * * 1", "2026-11-22T12:07:10Z", "2026-11-22T12:07:00Z"}, // no tick within a day: this minute
		{"not a spec", "2026-11-22T12:07:10Z", "2026-11-22T12:07:00Z"},
	} {
		if got := occurrenceTick(c.spec, at(c.now)); got != minute(c.want) {
			t.Errorf("occurrenceTick(%q, %s) = %v, want %s", c.spec, c.now, time.Unix(got*60, 0).UTC(), c.want)
		}
	}
}

// testService is a broadcast desk on a Redis and a MySQL of the test's
// own, with what storing and claiming occurrences needs (no cluster: these
// tests fan nothing out).
func testService(t *testing.T) *Service {
	t.Helper()
	rc, _ := apptest.Redis(t)
	return New(Deps{Redis: rc, Repo: apptest.Repo(t), IDs: ids.NewGen(1), Clock: new(clock.Clock), Log: apptest.Log(),
		Retention: 15 * 24 * time.Hour, ReleaseAfter: 15 * 24 * time.Hour})
}
