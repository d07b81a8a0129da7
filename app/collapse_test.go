package app

import (
	"context"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

// A collapsing message is retried after it merged into an unread row and
// the user read that row: the retry must not store it again as a new
// unread message.
func TestCollapseRetryAfterAReadStoresNothingNew(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	const uid = 7401
	msg := func() models.Message {
		id := a.IDs.Next()
		now := time.Now().UTC()
		return models.Message{ID: id, ToUID: uid, Kind: "comment", Body: "{}", CollapseKey: "post:9", Count: 1, SortKey: id, CreatedAt: now, UpdatedAt: now}
	}
	first, late, second := msg(), msg(), msg()
	row, err := a.Repo.UpsertCollapsed(ctx, first)
	if err != nil || row.ID != first.ID {
		t.Fatalf("first = %+v, %v", row, err)
	}
	row, err = a.Repo.UpsertCollapsed(ctx, second)
	if err != nil || row.ID != first.ID || row.Count != 2 {
		t.Fatalf("second = id %d count %d, %v; want merged into %d with count 2", row.ID, row.Count, err, first.ID)
	}
	if _, err := a.Repo.DB.NewUpdate().TableExpr(models.ShardTable(uid)).Set("is_read = 1").Where("id = ?", first.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	row, err = a.Repo.UpsertCollapsed(ctx, second) // the retry
	if err != nil || row.ID != first.ID || row.Count != 2 {
		t.Fatalf("retry = id %d count %d, %v; want the read row %d as it was", row.ID, row.Count, err, first.ID)
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
	if row, err := a.Repo.UpsertCollapsed(ctx, late); err != nil || row.ID != late.ID || row.Count != 1 {
		t.Fatalf("late message after the read = %+v, %v; want a new row %d", row, err, late.ID)
	}
}
