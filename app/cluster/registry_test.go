package cluster

import (
	"context"
	"testing"
)

// A sweep of a dead instance that fails keeps the instance listed, so a
// later pass sweeps it; only a clean sweep forgets it.
func TestFailedSweepIsRetried(t *testing.T) {
	a := testService(t)
	ctx := context.Background()
	const dead = "dead-instance"
	const uid = 4242
	do := func(cmds ...string) {
		t.Helper()
		if err := a.Redis.Do(ctx, a.Redis.B().Arbitrary(cmds[0]).Args(cmds[1:]...).Build()).Error(); err != nil {
			t.Fatal(cmds, err)
		}
	}
	do("SADD", keyInstances, dead)
	do("HSET", KeyUserConns(uid), dead, "1")
	do("SET", keyOnline, "1")
	do("SET", keyInstanceConns(dead), "not a hash") // HSCAN fails: WRONGTYPE
	if err := a.sweepDead(ctx); err != nil {
		t.Fatal(err)
	}
	listed, err := a.Redis.Do(ctx, a.Redis.B().Sismember().Key(keyInstances).Member(dead).Build()).AsBool()
	if err != nil || !listed {
		t.Fatalf("after a failed sweep the instance is listed = %v (%v), want true", listed, err)
	}

	do("DEL", keyInstanceConns(dead))
	do("HSET", keyInstanceConns(dead), "conn-1", "4242|user|ws|0")
	if err := a.sweepDead(ctx); err != nil {
		t.Fatal(err)
	}
	listed, _ = a.Redis.Do(ctx, a.Redis.B().Sismember().Key(keyInstances).Member(dead).Build()).AsBool()
	left, _ := a.Redis.Do(ctx, a.Redis.B().Hlen().Key(KeyUserConns(uid)).Build()).AsInt64()
	online, _ := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyOnline).Build()).AsInt64()
	if listed || left != 0 || online != 0 {
		t.Fatalf("after a clean sweep: listed %v, user's instances %d, online %d; want false, 0, 0", listed, left, online)
	}
}
