package luascript

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/redis/rueidis"
)

// ExecMulti must work on a Redis that has never seen the script (NOSCRIPT
// → EVAL) and after, without a SCRIPT LOAD round trip before each call.
func TestLuaExecMultiLoadsOnNoScript(t *testing.T) {
	rc, _ := apptest.Redis(t)
	ctx := context.Background()
	s := New(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	if err := rc.Do(ctx, rc.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	loads := func() int64 {
		info, err := rc.Do(ctx, rc.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		// Redis 7 counts SCRIPT LOAD on its own; 6.2 counts every SCRIPT
		// subcommand under one name (this test sends no other).
		return statCalls(info, "cmdstat_script|load") + statCalls(info, "cmdstat_script")
	}
	before := loads()
	for round := range 3 {
		res := s.ExecMulti(ctx, rc, rueidis.LuaExec{Keys: []string{"pd:test:lua"}, Args: []string{"2"}}, rueidis.LuaExec{Keys: []string{"pd:test:lua"}, Args: []string{"3"}})
		for i, r := range res {
			n, err := r.AsInt64()
			if err != nil {
				t.Fatalf("round %d exec %d: %v", round, i, err)
			}
			if want := int64(5*round + 2 + 3*i); n != want {
				t.Fatalf("round %d exec %d = %d, want %d (each call must run exactly once)", round, i, n, want)
			}
		}
	}
	after := loads()
	if n := after - before; n != 0 {
		t.Fatalf("%d SCRIPT LOAD calls, want 0", n)
	}
	// The count must be able to move, or the check above proves nothing.
	if err := rc.Do(ctx, rc.B().ScriptLoad().Script("return 1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if n := loads() - after; n != 1 {
		t.Fatalf("a SCRIPT LOAD counted %d times, want 1: the statistic is not being read", n)
	}
}

// statCalls reads calls=N for a command from INFO commandstats.
func statCalls(info, cmd string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd+":calls="); ok {
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			return n
		}
	}
	return 0
}
