// Package apptest gives the app packages' tests real stores of their own:
// a Redis client on a redis-server started for the test, and a migrated
// MySQL database created for it on the server PUSHDESK_MYSQL_DSN names,
// dropped when the test ends.
package apptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"testing"

	"github.com/pushdesk/pushdesk/internal/redisurl"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
	"github.com/redis/rueidis"
)

// Redis returns a client of a redis-server of tb's own, and its URL.
func Redis(tb testing.TB) (rueidis.Client, string) {
	tb.Helper()
	url := testsvc.Redis(tb)
	return Client(tb, url), url
}

// Client is a rueidis client of the Redis at url (a cluster's too, in
// the redis+cluster:// form), closed when tb ends.
func Client(tb testing.TB, url string) rueidis.Client {
	tb.Helper()
	var opt rueidis.ClientOption
	var err error
	if redisurl.IsCluster(url) {
		var c redisurl.Cluster
		c, err = redisurl.Parse(url)
		opt.InitAddress = c.Addrs
	} else {
		opt, err = rueidis.ParseURL(url)
	}
	if err != nil {
		tb.Fatal(err)
	}
	opt.DisableCache = true
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(rc.Close)
	return rc
}

// DSN creates a migrated database of tb's own and returns its DSN; the
// database is dropped when tb ends.
func DSN(tb testing.TB) string {
	tb.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	dsn, drop, err := testsvc.OwnDatabase("pushdesk_test_" + hex.EncodeToString(b[:]))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(drop)
	ctx := context.Background()
	db, err := models.Open(ctx, dsn, 2)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Run(ctx, db); err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// Repo opens DSN(tb) and closes it when tb ends.
func Repo(tb testing.TB) *models.Repo {
	tb.Helper()
	db, err := models.Open(context.Background(), DSN(tb), 4)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return &models.Repo{DB: db}
}

// Log is a logger for tests: errors only.
func Log() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}
