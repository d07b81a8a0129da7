package app

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
)

// testApp builds an App on its own Redis database and MySQL database.
func testApp(t *testing.T) *App {
	t.Helper()
	testRedis(t) // flushes the database the App uses
	dsn := os.Getenv("PUSHDESK_TEST_APP_MYSQL_DSN")
	if dsn == "" {
		dsn = "root@tcp(127.0.0.1:3306)/pushdesk_app_test"
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := cfg.DBName
	cfg.DBName = ""
	root, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Exec("DROP DATABASE IF EXISTS `" + name + "`"); err != nil {
		t.Fatal(err)
	}
	root.Close()
	ctx := context.Background()
	db, err := models.Open(ctx, dsn, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Run(ctx, db); err != nil {
		t.Fatal(err)
	}
	db.Close()
	redisURL := os.Getenv("PUSHDESK_TEST_APP_REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/11"
	}
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
	if err := a.markInFlight(ctx, []uint64{uid}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	id := a.IDs.Next()
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
	if err := deliverScript.Exec(ctx, a.Redis, deliverKeys(uid), []string{"comment", "1", "-1"}).Error(); err != nil {
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
	if err := a.markInFlight(ctx, []uint64{uid}); err != nil {
		t.Fatal(err)
	}
	id2 := a.IDs.Next()
	_ = a.Repo.InsertMessages(ctx, []models.Message{{ID: id2, ToUID: uid, Kind: "mail", Body: "{}", Count: 1, SortKey: id2, CreatedAt: now, UpdatedAt: now}})
	if err := deliverScript.Exec(ctx, a.Redis, deliverKeys(uid), []string{"mail", "1", "-1"}).Error(); err != nil {
		t.Fatal(err)
	}
	if u, _ := a.Unread(ctx, uid); u.Total != 2 || u.ByKind["mail"] != 1 {
		t.Fatalf("Unread = %+v, want total 2 with one mail", u)
	}
}
