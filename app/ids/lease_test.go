package ids

import (
	"context"
	"log/slog"
	"testing"

	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/redis/rueidis"
)

// testRedis connects to a redis-server of the test's own.
func testRedis(t *testing.T) rueidis.Client {
	t.Helper()
	rc, _ := apptest.Redis(t)
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
		n, err := takeNode(ctx, rc, "i"+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		if seen[n] {
			t.Fatalf("takeNode = %d, already held", n)
		}
		seen[n] = true
	}
}

func TestRenewNodeSwitchesWhenTheLeaseIsTaken(t *testing.T) {
	rc := testRedis(t)
	ctx := context.Background()
	a, err := Lease(ctx, rc, "us", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	old := a.Node()
	if err := a.Renew(ctx); err != nil || a.Node() != old {
		t.Fatalf("Renew with our lease = %v, node %d → %d", err, old, a.Node())
	}
	// Another instance took our node (our lease lapsed, or Redis lost it).
	if err := rc.Do(ctx, rc.B().Set().Key(keyNodeLease(old)).Value("intruder").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	before := a.Next()
	if err := a.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Node() == old {
		t.Fatal("kept a node another instance holds")
	}
	after := a.Next()
	if after <= before || (after>>12)&0x3ff != a.Node() {
		t.Fatalf("id after the switch = %d (node %d), want > %d on node %d", after, (after>>12)&0x3ff, before, a.Node())
	}
	if v, _ := rc.Do(ctx, rc.B().Get().Key(keyNodeLease(old)).Build()).ToString(); v != "intruder" {
		t.Fatalf("the other instance's lease became %q", v)
	}
}
