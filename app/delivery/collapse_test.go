package delivery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

// collapsing returns n messages for uid with one kind and collapse key, in
// id (and so sort key) order, each with its index as its body.
func collapsing(tb testing.TB, a *Service, uid uint64, n int) []models.Message {
	tb.Helper()
	out := make([]models.Message, n)
	for i := range out {
		id := a.IDs.Next()
		at := time.UnixMilli(time.Now().UnixMilli() + int64(i)).UTC() // distinct times, as DATETIME(3) keeps them
		out[i] = models.Message{ID: id, ToUID: uid, Kind: "comment", Body: fmt.Sprintf(`{"n":%d}`, i+1), CollapseKey: "post:9", Count: 1, SortKey: id, CreatedAt: at, UpdatedAt: at}
	}
	return out
}

// collapsedRows returns uid's stored rows, newest first.
func collapsedRows(tb testing.TB, a *Service, uid uint64) []models.Message {
	tb.Helper()
	rows, err := a.Repo.ListMessages(context.Background(), models.ListQuery{UID: uid, Limit: 100})
	if err != nil {
		tb.Fatal(err)
	}
	return rows
}

// A collapsing message is retried after it merged into an unread row and
// the user read that row: the retry must not store it again as a new
// unread message.
func TestCollapseRetryAfterAReadStoresNothingNew(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	const uid = 7401
	ms := collapsing(t, a, uid, 3)
	first, late, second := ms[0], ms[1], ms[2]
	row, _, err := a.Repo.UpsertCollapsed(ctx, first)
	if err != nil || row.ID != first.ID {
		t.Fatalf("first = %+v, %v", row, err)
	}
	row, _, err = a.Repo.UpsertCollapsed(ctx, second)
	if err != nil || row.ID != first.ID || row.Count != 2 {
		t.Fatalf("second = id %d count %d, %v; want merged into %d with count 2", row.ID, row.Count, err, first.ID)
	}
	if _, err := a.Repo.DB.NewUpdate().TableExpr(models.ShardTable(uid)).Set("is_read = 1").Where("id = ?", first.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	row, applied, err := a.Repo.UpsertCollapsed(ctx, second) // the retry
	if err != nil || applied || row.ID != first.ID || row.Count != 2 {
		t.Fatalf("retry = id %d count %d applied %v, %v; want the read row %d as it was", row.ID, row.Count, applied, err, first.ID)
	}
	var rows, unread int
	if err := a.Repo.DB.NewSelect().TableExpr(models.ShardTable(uid)).ColumnExpr("COUNT(*), COALESCE(SUM(is_read = 0), 0)").Where("to_uid = ?", uid).Scan(ctx, &rows, &unread); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || unread != 0 {
		t.Fatalf("rows = %d, unread = %d; want 1 row, read", rows, unread)
	}
	// A message never applied is stored after the read, even one older
	// than the row it would have gone into (ids come from several clocks,
	// and the delayed queue holds messages back).
	if row, _, err := a.Repo.UpsertCollapsed(ctx, late); err != nil || row.ID != late.ID || row.Count != 1 {
		t.Fatalf("late message after the read = %+v, %v; want a new row %d", row, err, late.ID)
	}
}

// Deliveries of different messages run side by side in workers, so they
// apply in any order, and a retry applies one again after later ones.
// However they come, the row counts each of m1, m2, m3 once and shows the
// newest (m3); a repeat reports that it applied nothing.
func TestCollapseCountsEachMessageOnceInAnyOrder(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	for i, tc := range []struct {
		name  string
		order []int // indexes into m1, m2, m3
	}{
		{"in order", []int{0, 1, 2}},
		{"the newest before an older one", []int{0, 2, 1}},
		{"newest first", []int{2, 1, 0}},
		{"a repeat of a message older than the newest", []int{0, 1, 2, 1}},
		{"a repeat of an older message applied after the newest", []int{0, 2, 1, 1}},
		{"a repeat of the newest", []int{0, 1, 2, 2}},
		{"a repeat of the newest applied before an older one", []int{0, 2, 1, 2}},
		{"a repeat of the row's first message", []int{0, 2, 1, 0}},
		{"every message twice", []int{1, 2, 1, 0, 2, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid := uint64(7410 + i)
			ms := collapsing(t, a, uid, 3)
			seen := map[int]bool{}
			var row models.Message
			for _, k := range tc.order {
				got, applied, err := a.Repo.UpsertCollapsed(ctx, ms[k])
				if err != nil {
					t.Fatal(err)
				}
				if applied == seen[k] {
					t.Errorf("UpsertCollapsed(m%d) applied = %v, want %v", k+1, applied, !seen[k])
				}
				seen[k] = true
				row = got
			}
			first, newest := ms[tc.order[0]], ms[2]
			if row.ID != first.ID || row.Count != 3 || row.Body != newest.Body || row.SortKey != newest.SortKey {
				t.Errorf("last UpsertCollapsed = id %d count %d body %s sort key %d; want id %d count 3 body %s sort key %d",
					row.ID, row.Count, row.Body, row.SortKey, first.ID, newest.Body, newest.SortKey)
			}
			rows := collapsedRows(t, a, uid)
			if len(rows) != 1 || rows[0].Count != 3 || rows[0].Body != newest.Body || !rows[0].UpdatedAt.Equal(newest.UpdatedAt) || rows[0].IsRead {
				t.Fatalf("stored rows = %+v; want one unread row with count 3 and m3's body and time", rows)
			}
		})
	}
}

// Deliveries of n messages (each twice: a task and its retry) applied
// from as many goroutines at once still count n, in one row.
func TestCollapseCountsConcurrentDeliveries(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	const uid, n = 7420, 24
	ms := collapsing(t, a, uid, n)
	work := append(append([]models.Message(nil), ms...), ms...)
	rand.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		applied = map[uint64]int{}
	)
	for _, m := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, ok, err := a.Repo.UpsertCollapsed(ctx, m)
			if err != nil {
				t.Errorf("UpsertCollapsed(%d): %v", m.ID, err)
				return
			}
			if ok {
				mu.Lock()
				applied[m.ID]++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, m := range ms {
		if applied[m.ID] != 1 {
			t.Errorf("message %d applied %d times, want once", m.ID, applied[m.ID])
		}
	}
	rows := collapsedRows(t, a, uid)
	if len(rows) != 1 || rows[0].Count != n || rows[0].Body != ms[n-1].Body {
		t.Fatalf("stored rows = %+v; want one row with count %d and the body %s", rows, n, ms[n-1].Body)
	}
}

// Through Deliver: a merge adds nothing to the unread total, and neither
// does a repeat, even one that does not recount (a first attempt that
// repeats what another task already applied), of the row's own first
// message or of a merged one.
func TestCollapseRepeatedDeliveriesKeepTheCounters(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	const uid = 7430
	if u, err := a.Unread(ctx, uid); err != nil || u.Total != 0 {
		t.Fatalf("Unread = %+v, %v; want 0 (and cached)", u, err)
	}
	ms := collapsing(t, a, uid, 3)
	deliver := func(m models.Message, recount bool) {
		t.Helper()
		d := &Delivery{IDs: []uint64{m.ID}, UIDs: []uint64{uid}, Kind: m.Kind, Body: []byte(m.Body), CollapseKey: m.CollapseKey, At: m.CreatedAt.UnixMilli()}
		if err := a.Deliver(ctx, []*Delivery{d}, recount); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		k       int
		recount bool
	}{{0, false}, {2, false}, {1, false}, {1, false}, {0, false}, {2, true}} {
		deliver(ms[step.k], step.recount)
		if u, err := a.Unread(ctx, uid); err != nil || u.Total != 1 || u.ByKind["comment"] != 1 {
			t.Fatalf("after delivering m%d (recount %v): Unread = %+v, %v; want 1 comment", step.k+1, step.recount, u, err)
		}
	}
	rows := collapsedRows(t, a, uid)
	if len(rows) != 1 || rows[0].Count != 3 || rows[0].Body != ms[2].Body {
		t.Fatalf("stored rows = %+v; want one row with count 3 and m3's body", rows)
	}
}

// The retention job forgets which collapsing messages were applied once
// they are past collapseAppliedKeep, and keeps those that are not.
func TestPurgeForgetsOldCollapseRecords(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	const uid = 7440
	ms := collapsing(t, a, uid, 2)
	if _, _, err := a.Repo.UpsertCollapsed(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-collapseAppliedKeep - time.Minute).UTC()
	if _, err := a.Repo.DB.NewUpdate().Model((*models.CollapseApplied)(nil)).Set("applied_at = ?", old).Where("id = ?", ms[0].ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Repo.UpsertCollapsed(ctx, ms[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PurgeExpired(ctx); err != nil {
		t.Fatal(err)
	}
	var left []uint64
	if err := a.Repo.DB.NewSelect().Model((*models.CollapseApplied)(nil)).Column("id").Scan(ctx, &left); err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != ms[1].ID {
		t.Fatalf("records left = %v, want only %d", left, ms[1].ID)
	}
	if rows := collapsedRows(t, a, uid); len(rows) != 1 || rows[0].Count != 2 {
		t.Fatalf("stored rows = %+v; want the row, count 2, kept", rows)
	}
}
