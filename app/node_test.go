package app

import (
	"context"
	"testing"

	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/redis/rueidis"
)

// testRedis connects to an empty redis-server of the test's own.
func testRedis(t *testing.T) rueidis.Client {
	t.Helper()
	url := testsvc.Redis(t)
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

func TestRenewNodeSwitchesWhenTheLeaseIsTaken(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	old := a.node.Load()
	if err := a.renewNode(ctx); err != nil || a.node.Load() != old {
		t.Fatalf("renewNode with our lease = %v, node %d → %d", err, old, a.node.Load())
	}
	// Another instance took our node (our lease lapsed, or Redis lost it).
	if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keyNodeLease(old)).Value("intruder").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	before := a.IDs.Next()
	if err := a.renewNode(ctx); err != nil {
		t.Fatal(err)
	}
	if a.node.Load() == old {
		t.Fatal("kept a node another instance holds")
	}
	after := a.IDs.Next()
	if after <= before || (after>>12)&0x3ff != a.node.Load() {
		t.Fatalf("id after the switch = %d (node %d), want > %d on node %d", after, (after>>12)&0x3ff, before, a.node.Load())
	}
	if v, _ := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyNodeLease(old)).Build()).ToString(); v != "intruder" {
		t.Fatalf("the other instance's lease became %q", v)
	}
}
