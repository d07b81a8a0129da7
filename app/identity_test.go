package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/delivery"
	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/pushdesk/pushdesk/internal/testsvc"
)

// idleQueue takes nothing (these tests enqueue nothing).
type idleQueue struct{}

func (idleQueue) EnqueueDeliver(context.Context, []*delivery.Delivery) error { return nil }
func (idleQueue) EnqueueDelayed(context.Context, *delivery.Delivery) error   { return nil }
func (idleQueue) EnqueueBroadcast(context.Context, uint64, time.Time) error  { return nil }
func (idleQueue) WakeWorkers()                                               {}

// An instance pointed at one deployment's Redis and another's MySQL
// refuses to start, and says why; the right pair starts.
func TestNewRefusesARedisAndAMySQLOfTwoClusters(t *testing.T) {
	redisURL := testsvc.Redis(t)
	cfg := Config{RedisURL: redisURL, MySQLDSN: apptest.DSN(t), JWTSecret: "jwt-test", IngestKey: "ingest-test"}
	a, err := New(context.Background(), cfg, apptest.Log(), idleQueue{})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	other := cfg
	other.MySQLDSN = apptest.DSN(t) // another deployment's database, beside the first one's Redis
	if a, err := New(context.Background(), other, apptest.Log(), idleQueue{}); err == nil {
		a.Close()
		t.Fatal("New started with a Redis and a MySQL of different clusters")
	} else if !strings.Contains(err.Error(), "cluster") {
		t.Fatalf("refused with %q, want it to name the cluster mismatch", err)
	}
	if a, err := New(context.Background(), cfg, apptest.Log(), idleQueue{}); err != nil {
		t.Fatalf("the right pair again: %v", err)
	} else {
		a.Close()
	}
}
