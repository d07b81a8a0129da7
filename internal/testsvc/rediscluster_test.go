package testsvc

import (
	"testing"
	"time"
)

// A killed master's replica takes its slots over: what the failover test
// of the cluster suite relies on, checked on the cluster alone.
func TestRedisClusterFailsOverAKilledMaster(t *testing.T) {
	c := StartRedisCluster(t)
	if _, err := c.Cli(c.MasterOf("k"), "set", "k", "v"); err != nil {
		t.Fatal(err)
	}
	old := c.MasterOf("k")
	time.Sleep(200 * time.Millisecond) // let the write reach the replica
	c.Kill(old)
	c.WaitHealthy(30 * time.Second)
	now := c.MasterOf("k")
	if now == old {
		t.Fatalf("MasterOf(k) = %s after killing it", now)
	}
	if v, err := c.Cli(now, "get", "k"); err != nil || v != "v" {
		t.Fatalf("GET k on the new master = %q, %v, want v", v, err)
	}
}
