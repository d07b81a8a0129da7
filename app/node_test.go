package app

import (
	"context"
	"os"
	"testing"

	"github.com/redis/rueidis"
)

// testRedis connects to the test Redis (its own database number).
func testRedis(t *testing.T) rueidis.Client {
	t.Helper()
	url := os.Getenv("PUSHDESK_TEST_APP_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/11"
	}
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache = true
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("redis %s: %v", url, err)
	}
	t.Cleanup(rc.Close)
	if err := rc.Do(context.Background(), rc.B().Flushdb().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	return rc
}

func TestLeaseNodeNeverSharesANode(t *testing.T) {
	rc := testRedis(t)
	ctx := context.Background()
	// The counter wraps: node 5 is taken, and the counter points at it again.
	if err := rc.Do(ctx, rc.B().Set().Key(keyNodeLease(5)).Value("other").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Do(ctx, rc.B().Set().Key(keyNodeCounter).Value("1028").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{5: true}
	for i := range 3 {
		n, err := leaseNode(ctx, rc, "i"+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		if seen[n] {
			t.Fatalf("leaseNode = %d, already held", n)
		}
		seen[n] = true
	}
}
