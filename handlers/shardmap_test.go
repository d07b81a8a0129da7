package handlers

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
)

// TestShardMapAcrossTwoServers runs a server whose shard map puts shards
// 0-63 on the machine's MariaDB (with every other table) and 64-127 on a
// private second MariaDB. Messages land in their user's server only,
// replay, unread and read work for users on both; with the second server
// stopped, its users' deliveries are requeued and retried while the first
// server's users are still stored and served; once it is back, nothing
// is lost and nothing is stored twice.
func TestShardMapAcrossTwoServers(t *testing.T) {
	second := testsvc.StartMariaDB(t)
	mainDSN := testsvc.Database(t, "pushdesk_shardmap")
	secondDSN := second.Database("pushdesk_shardmap")
	shardMap := fmt.Sprintf("0-63=%s;64-127=%s", mainDSN, secondDSN)
	migrateWithShards(t, mainDSN, shardMap)
	s := startServer(t, func(c *app.Config) {
		c.RedisURL, c.MySQLDSN, c.MySQLShards, c.RunWorkers = testsvc.Redis(t), mainDSN, shardMap, true
	})
	base := "http://" + s.Addr()
	db1, db2 := testsvc.OpenDB(t, mainDSN), testsvc.OpenDB(t, secondDSN)
	u1, u2 := newUID(), newUID()
	for u1%models.ShardCount >= 64 {
		u1 = newUID()
	}
	for u2%models.ShardCount < 64 {
		u2 = newUID()
	}
	ingest := func(uids ...uint64) {
		t.Helper()
		list := ""
		for i, u := range uids {
			if i > 0 {
				list += ","
			}
			list += fmt.Sprint(u)
		}
		if code, body := doAt(t, base, http.MethodPost, "/internal/v1/messages", testIngestKey, `{"to_uids":[`+list+`],"kind":"note","body":{}}`); code != 202 {
			t.Fatalf("ingest = %d %v", code, body)
		}
	}
	rows := func(db *sql.DB, uid uint64) (int, error) {
		var n int
		err := db.QueryRow("SELECT COUNT(*) FROM "+models.ShardTable(uid)+" WHERE to_uid = ?", uid).Scan(&n)
		return n, err
	}
	waitRows := func(db *sql.DB, uid uint64, want int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			n, err := rows(db, uid)
			if err == nil && n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("user %d (shard %d) has %d rows (%v), want %d", uid, uid%models.ShardCount, n, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	unread := func(uid uint64) int64 {
		t.Helper()
		code, body := doAt(t, base, http.MethodGet, "/api/v1/me/unread", mint(t, uid), "")
		if code != 200 {
			t.Fatalf("unread of %d = %d %v", uid, code, body)
		}
		return int64(body["total"].(float64))
	}
	replay := func(uid uint64, want int) {
		t.Helper()
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token="+mint(t, uid), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := &wsClient{tb: t, conn: conn}
		if h := c.until("hello"); h["unread"].(map[string]any)["total"].(float64) != float64(want) {
			t.Fatalf("hello of %d: %v, want %d unread", uid, h, want)
		}
		for range want {
			if m := c.until("msg"); m["replay"] != true {
				t.Fatalf("replay of %d: %v", uid, m)
			}
		}
	}

	// Each user's row is on their server, and their shard table is not
	// on the other.
	ingest(u1, u2)
	waitRows(db1, u1, 1, 10*time.Second)
	waitRows(db2, u2, 1, 10*time.Second)
	if _, err := rows(db2, u1); err == nil {
		t.Fatalf("%s exists on the second server", models.ShardTable(u1))
	}
	if _, err := rows(db1, u2); err == nil {
		t.Fatalf("%s exists on the first server", models.ShardTable(u2))
	}
	for _, u := range []uint64{u1, u2} {
		replay(u, 1)
		if n := unread(u); n != 1 {
			t.Fatalf("unread of %d = %d, want 1", u, n)
		}
		if code, body := doAt(t, base, http.MethodPost, "/api/v1/me/read", mint(t, u), `{"all":true}`); code != 200 || body["updated"].(float64) != 1 {
			t.Fatalf("read all of %d = %d %v", u, code, body)
		}
		if n := unread(u); n != 0 {
			t.Fatalf("unread of %d after read = %d", u, n)
		}
	}

	// The second server down: a task for both users stores the first's
	// message and requeues the second's; a task for the second alone
	// fails and is retried. The first user is served throughout.
	second.Stop()
	requeued := testutil.ToFloat64(s.App.Metrics.Requeued)
	ingest(u1, u2)
	ingest(u2)
	waitRows(db1, u1, 2, 10*time.Second)
	replay(u1, 1)
	if n := unread(u1); n != 1 {
		t.Fatalf("unread of %d with the other server down = %d, want 1", u1, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.App.Metrics.Requeued) < requeued+1 {
		if time.Now().After(deadline) {
			t.Fatal("the second server's part of the task was not requeued")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := doAt(t, base, http.MethodGet, "/healthz", "", ""); code != 200 {
		t.Fatalf("healthz = %d with a shard server down", code)
	}

	// Back: the retries store the second user's two messages, once each.
	second.Start()
	waitRows(db2, u2, 3, 90*time.Second)
	replay(u2, 2)
	if n := unread(u2); n != 2 {
		t.Fatalf("unread of %d after the restart = %d, want 2", u2, n)
	}
	time.Sleep(time.Second) // a late repeat would show now
	waitRows(db1, u1, 2, time.Second)
	waitRows(db2, u2, 3, time.Second)
}

// migrateWithShards migrates as `pushdesk migrate` does with a shard map.
func migrateWithShards(t *testing.T, mainDSN, shardMap string) {
	t.Helper()
	ctx := context.Background()
	ranges, err := models.ParseShardMap(shardMap)
	if err != nil {
		t.Fatal(err)
	}
	db, err := models.Open(ctx, mainDSN, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	shards, err := models.OpenShards(ctx, db, mainDSN, ranges, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	defer shards.Close()
	if _, err := migrations.RunSharded(ctx, db, shards); err != nil {
		t.Fatal(err)
	}
}
