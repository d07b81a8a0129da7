package app

import (
	"context"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

func recurringTemplate(t *testing.T, a *App) uint64 {
	t.Helper()
	tmpl := &models.Broadcast{ID: a.IDs.Next(), Segment: "all", Kind: "system", Body: "{}",
		Status: models.BroadcastRecurring, Cron: "* * * * *", CreatedAt: time.Now().UTC()}
	if err := a.Repo.InsertBroadcast(context.Background(), tmpl); err != nil {
		t.Fatal(err)
	}
	return tmpl.ID
}

func occurrencesOf(t *testing.T, a *App, tmpl uint64) int {
	t.Helper()
	var n int
	if err := a.Repo.DB.NewSelect().TableExpr("broadcasts").ColumnExpr("COUNT(*)").Where("parent_id = ?", tmpl).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// nextMinute frees the template's minute claims, as the clock reaching the
// next minute does.
func nextMinute(t *testing.T, a *App, tmpl uint64) {
	t.Helper()
	now := time.Now().Unix() / 60
	for m := now - 1; m <= now+1; m++ {
		a.Redis.Do(context.Background(), a.Redis.B().Del().Key(keyOccurrence(tmpl, m)).Build())
	}
}

// A recurring run whose enqueue failed is retried; when the retry lands in
// the next minute it must send the occurrence it made, not make another.
func TestOccurrenceRetryInTheNextMinuteReusesItsOccurrence(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	tmpl := recurringTemplate(t, a)
	first, err := a.NewOccurrence(ctx, tmpl, "run-a")
	if err != nil || first == 0 {
		t.Fatalf("first attempt = %d, %v", first, err)
	}
	// Another instance's run for the same minute takes nothing new.
	if id, err := a.NewOccurrence(ctx, tmpl, "run-b"); err != nil || (id != 0 && id != first) {
		t.Fatalf("another run in the same minute = %d, %v; want none or %d", id, err, first)
	}
	nextMinute(t, a, tmpl)
	again, err := a.NewOccurrence(ctx, tmpl, "run-a")
	if err != nil || again != first {
		t.Fatalf("retry in the next minute = %d, %v; want %d", again, err, first)
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
	a := testApp(t)
	ctx := context.Background()
	tmpl := recurringTemplate(t, a)
	claimed := a.IDs.Next()
	if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keyOccurrenceRun("run-d")).Value(FormatID(claimed)).Build()).Error(); err != nil {
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
