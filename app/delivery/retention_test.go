package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

// A purge that dies between deleting a user's unread rows and resetting
// their counter leaves the user noted; the next purge resets them, though
// their rows are gone and no query would find them again.
func TestPurgeFinishesAResetThatDidNotHappen(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	const uid = 7301
	old := time.Now().Add(-48 * time.Hour).UTC()
	var msgs []models.Message
	for range 3 {
		id := a.IDs.Next()
		msgs = append(msgs, models.Message{ID: id, ToUID: uid, Kind: "comment", Body: "{}", Count: 1, SortKey: id, CreatedAt: old, UpdatedAt: old})
	}
	if err := a.Repo.InsertMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if u, err := a.Unread(ctx, uid); err != nil || u.Total != 3 {
		t.Fatalf("Unread before the purge = %+v, %v; want 3 (and cached)", u, err)
	}
	// The first purge deletes, then dies before its reset.
	n, noted, err := a.purgeBatch(ctx, int(uid%models.ShardCount), time.Now().UTC())
	if err != nil || n != 3 || !noted {
		t.Fatalf("purgeBatch = %d, %v, %v; want 3 deleted and the user noted", n, noted, err)
	}
	if u, _ := a.Unread(ctx, uid); u.Total != 3 {
		t.Fatalf("cached count = %d; the test needs the stale 3 still cached", u.Total)
	}
	if ok, _ := a.Redis.Do(ctx, a.Redis.B().Sismember().Key(keyPurgeReset).Member("7301").Build()).AsBool(); !ok {
		t.Fatal("the user is not noted for a reset")
	}
	// The next purge finds nothing to delete, but resets the noted user.
	if _, err := a.PurgeExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if u, err := a.Unread(ctx, uid); err != nil || u.Total != 0 {
		t.Fatalf("Unread after the next purge = %+v, %v; want 0", u, err)
	}
	if n, _ := a.Redis.Do(ctx, a.Redis.B().Scard().Key(keyPurgeReset).Build()).AsInt64(); n != 0 {
		t.Fatalf("%d users still noted after their reset", n)
	}
}

// A purge that cannot note the users it is about to cost unread messages
// deletes nothing.
func TestPurgeDeletesNothingItCannotNote(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	const uid = 7302
	old := time.Now().Add(-48 * time.Hour).UTC()
	id := a.IDs.Next()
	if err := a.Repo.InsertMessages(ctx, []models.Message{{ID: id, ToUID: uid, Kind: "comment", Body: "{}", Count: 1, SortKey: id, CreatedAt: old, UpdatedAt: old}}); err != nil {
		t.Fatal(err)
	}
	// The note fails: the key holds a string, so SADD answers WRONGTYPE.
	if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keyPurgeReset).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.purgeBatch(ctx, int(uid%models.ShardCount), time.Now().UTC()); err == nil {
		t.Fatal("purgeBatch succeeded without noting the user")
	}
	var left int
	if err := a.Repo.DB.NewSelect().TableExpr(models.ShardTable(uid)).ColumnExpr("COUNT(*)").Where("to_uid = ?", uid).Scan(ctx, &left); err != nil || left != 1 {
		t.Fatalf("rows left = %d, %v; want the 1 row kept", left, err)
	}
}
