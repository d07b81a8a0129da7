package models_test

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
)

// hasTable reports whether db's database has table.
func hasTable(t *testing.T, db *sql.DB, table string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// TestShardMapAcrossServers puts shards 0-63 on the machine's MariaDB
// (the main database) and 64-127 on a private second server, migrates,
// and runs every shard query for a user on each: each lands on its
// server only. With the second server stopped, the first's users are
// still written and read, and the failure names the second server.
func TestShardMapAcrossServers(t *testing.T) {
	ctx := context.Background()
	mainDSN := testsvc.Database(t, "pushdesk_shards_main")
	second := testsvc.StartMariaDB(t)
	secondDSN := second.Database("pushdesk_shards")
	ranges, err := models.ParseShardMap("0-63=" + mainDSN + ";64-127=" + secondDSN)
	if err != nil {
		t.Fatal(err)
	}
	mainDB, err := models.Open(ctx, mainDSN, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer mainDB.Close()
	shards, err := models.OpenShards(ctx, mainDB, mainDSN, ranges, 4, true)
	if err != nil {
		t.Fatal(err)
	}
	defer shards.Close()
	if _, err := migrations.RunSharded(ctx, mainDB, shards); err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.RunSharded(ctx, mainDB, shards); err != nil { // idempotent
		t.Fatal(err)
	}
	db1, db2 := mainDB.DB, shards.Servers[1].DB.DB
	for _, c := range []struct {
		db    *sql.DB
		table string
		want  bool
	}{
		{db1, "user_push_msg_0", true}, {db1, "user_push_msg_63", true}, {db1, "user_push_msg_64", false}, {db1, "user_push_msg_127", false},
		{db2, "user_push_msg_0", false}, {db2, "user_push_msg_63", false}, {db2, "user_push_msg_64", true}, {db2, "user_push_msg_127", true},
		{db1, "collapse_applied", true}, {db2, "collapse_applied", true}, {db1, "chat_conversations", true}, {db2, "chat_conversations", false},
	} {
		if got := hasTable(t, c.db, c.table); got != c.want {
			t.Errorf("table %s on server %v: %v, want %v", c.table, c.db == db2, got, c.want)
		}
	}

	repo := &models.Repo{DB: mainDB, Shards: shards}
	u1, u2 := uint64(1000*128+5), uint64(1000*128+70) // shards 5 and 70
	now := time.Now().UTC().Truncate(time.Millisecond)
	msg := func(id, uid uint64) models.Message {
		return models.Message{ID: id, ToUID: uid, Kind: "k", Body: `{}`, Count: 1, SortKey: id, CreatedAt: now, UpdatedAt: now}
	}
	if err := repo.InsertMessages(ctx, []models.Message{msg(1, u1), msg(2, u2), msg(3, u1), msg(4, u2)}); err != nil {
		t.Fatal(err)
	}
	count := func(db *sql.DB, uid uint64) int {
		t.Helper()
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM "+models.ShardTable(uid)+" WHERE to_uid = ?", uid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count(db1, u1) != 2 || count(db2, u2) != 2 {
		t.Fatalf("rows: %d on the first server, %d on the second", count(db1, u1), count(db2, u2))
	}
	for i, uid := range []uint64{u1, u2} {
		first, second := uint64(1+i), uint64(3+i)
		if by, unacked, err := repo.UnreadCounts(ctx, uid); err != nil || by["k"] != 2 || unacked != 2 {
			t.Fatalf("unread of %d: %v %d %v", uid, by, unacked, err)
		}
		if l, err := repo.ListMessages(ctx, models.ListQuery{UID: uid, UnreadOnly: true, Limit: 10}); err != nil || len(l) != 2 || l[0].ID != second {
			t.Fatalf("list of %d: %+v %v", uid, l, err)
		}
		if l, err := repo.ListResume(ctx, uid, first, first, 10); err != nil || len(l) != 1 || l[0].ID != second {
			t.Fatalf("resume of %d: %+v %v", uid, l, err)
		}
		if k, err := repo.SortKeyOf(ctx, uid, second); err != nil || k != second {
			t.Fatalf("sort key of %d: %d %v", uid, k, err)
		}
		if n, err := repo.MarkAcked(ctx, uid, []uint64{first}); err != nil || n != 1 {
			t.Fatalf("ack for %d: %d %v", uid, n, err)
		}
		if r, err := repo.MarkRead(ctx, uid, []uint64{first}); err != nil || r.Updated != 1 {
			t.Fatalf("read for %d: %+v %v", uid, r, err)
		}
		if n, err := repo.MarkAllRead(ctx, uid); err != nil || n != 1 {
			t.Fatalf("read all for %d: %d %v", uid, n, err)
		}
		// A collapsing message and its record go to the user's server.
		c := msg(10+uint64(i), uid)
		c.CollapseKey = "ck"
		if row, applied, err := repo.UpsertCollapsed(ctx, c); err != nil || !applied || row.ID != c.ID {
			t.Fatalf("collapse for %d: %+v %v %v", uid, row, applied, err)
		}
		if _, applied, err := repo.UpsertCollapsed(ctx, c); err != nil || applied {
			t.Fatalf("collapse repeat for %d applied again: %v", uid, err)
		}
	}
	var on1, on2 int
	_ = db1.QueryRow("SELECT COUNT(*) FROM collapse_applied").Scan(&on1)
	_ = db2.QueryRow("SELECT COUNT(*) FROM collapse_applied").Scan(&on2)
	if on1 != 1 || on2 != 1 {
		t.Fatalf("collapse records: %d on the first server, %d on the second, want 1 and 1", on1, on2)
	}
	for server := range repo.ServerCount() {
		if n, err := repo.DeleteCollapseAppliedBefore(ctx, server, time.Now().Add(time.Hour), 100); err != nil || n != 1 {
			t.Fatalf("prune collapse records on server %d: %d %v", server, n, err)
		}
	}
	if n, err := repo.DeleteOlder(ctx, int(u2%128), time.Now().Add(time.Hour), 100, nil); err != nil || n != 3 {
		t.Fatalf("retention on shard %d: %d %v", u2%128, n, err)
	}

	// The second server down: its users fail, the first's are served.
	second.Stop()
	err = repo.InsertMessages(ctx, []models.Message{msg(20, u1), msg(21, u2)})
	if err == nil || !strings.Contains(err.Error(), shards.Servers[1].Name) {
		t.Fatalf("insert with the second server down: %v", err)
	}
	if count(db1, u1) != 4 { // 1, 3, the collapsing one, 20
		t.Fatalf("the first server's user has %d rows, want 4", count(db1, u1))
	}
	if _, _, err := repo.UnreadCounts(ctx, u1); err != nil {
		t.Fatalf("unread on the first server: %v", err)
	}
	if _, _, err := repo.UnreadCounts(ctx, u2); err == nil {
		t.Fatal("unread on the stopped server answered")
	}
	if err := shards.Ping(ctx, time.Second); err == nil || !strings.Contains(err.Error(), "shards 64-127") {
		t.Fatalf("ping: %v", err)
	}
	second.Start()
	if err := repo.InsertMessages(ctx, []models.Message{msg(20, u1), msg(21, u2)}); err != nil {
		t.Fatalf("insert after the restart: %v", err)
	}
	if count(db2, u2) != 1 || count(db1, u1) != 4 {
		t.Fatalf("after the restart: %d and %d rows", count(db1, u1), count(db2, u2))
	}
	if err := shards.Ping(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
}

// A down shard server does not stop OpenShards without connect, and
// stops it with connect (migrate), naming the server.
func TestOpenShardsWithAServerDown(t *testing.T) {
	ctx := context.Background()
	mainDSN := testsvc.Database(t, "pushdesk_shards_open")
	mainDB, err := models.Open(ctx, mainDSN, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer mainDB.Close()
	port, _ := testsvc.FreePort()
	down := "root@tcp(127.0.0.1:" + strconv.Itoa(port) + ")/nowhere"
	ranges, err := models.ParseShardMap("0-63=" + mainDSN + ";64-127=" + down)
	if err != nil {
		t.Fatal(err)
	}
	s, err := models.OpenShards(ctx, mainDB, mainDSN, ranges, 2, false)
	if err != nil {
		t.Fatalf("lazy open with a server down: %v", err)
	}
	s.Close()
	if _, err := models.OpenShards(ctx, mainDB, mainDSN, ranges, 2, true); err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)+"/nowhere") {
		t.Fatalf("open for migrate with a server down: %v", err)
	}
}
