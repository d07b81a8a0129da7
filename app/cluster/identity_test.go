package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
)

// A Redis and a MySQL get one cluster id; a Redis that lost its data gets
// it back; a MySQL of another cluster, or one with no record beside a
// Redis that has one, is refused with an error that says which.
func TestIdentityPairsRedisWithMySQL(t *testing.T) {
	ctx := context.Background()
	cmd, url, err := testsvc.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rc := apptest.Client(t, url)
	repo := apptest.Repo(t)
	id, err := CheckIdentity(ctx, rc, repo)
	if err != nil || id == "" {
		t.Fatalf("a new pair: %q, %v", id, err)
	}
	if again, err := CheckIdentity(ctx, rc, repo); err != nil || again != id {
		t.Fatalf("the same pair again: %q, %v; want %q", again, err, id)
	}
	restarted := testsvc.RestartRedis(t, cmd, url) // killed and started empty: a restart without persistence
	t.Cleanup(func() { _ = restarted.Process.Kill(); _ = restarted.Wait() })
	// The client's connections died with the server: a write on one that
	// was not yet found dead fails once (rueidis retries only reads).
	back, err := CheckIdentity(ctx, rc, repo)
	for try := 0; err != nil && try < 20 && strings.Contains(err.Error(), "EOF"); try++ {
		time.Sleep(50 * time.Millisecond)
		back, err = CheckIdentity(ctx, rc, repo)
	}
	if err != nil || back != id {
		t.Fatalf("after Redis lost its data: %q, %v; want %q back", back, err, id)
	}

	fresh := identityOnly(t)
	if _, err := CheckIdentity(ctx, rc, fresh); err == nil || !strings.Contains(err.Error(), "no cluster record") {
		t.Fatalf("a database without a record beside this Redis: %v, want refused", err)
	}
	otherRedis, _ := apptest.Redis(t)
	other := identityOnly(t)
	if _, err := CheckIdentity(ctx, otherRedis, other); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckIdentity(ctx, rc, other); err == nil || !strings.Contains(err.Error(), "belongs to cluster") {
		t.Fatalf("another cluster's database beside this Redis: %v, want refused", err)
	}
	if n, _ := fresh.ClusterID(ctx); n != "" {
		t.Fatalf("the refused database was given id %q", n)
	}
}

// identityOnly is a database of the test's own holding only the identity
// table (the full schema's 128 shards are not needed here).
func identityOnly(t *testing.T) *models.Repo {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	dsn, drop, err := testsvc.OwnDatabase("pushdesk_test_id_" + hex.EncodeToString(b[:]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	db, err := models.Open(context.Background(), dsn, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE cluster_identity (one TINYINT UNSIGNED NOT NULL PRIMARY KEY, id VARCHAR(64) NOT NULL, created_at DATETIME(3) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return &models.Repo{DB: db}
}
