package delivery

import (
	"strconv"
	"strings"
	"testing"
)

// The scripts hold inFlightTTL as a literal: the Go constant and the Lua
// must say the same.
func TestLuaHoldsTheInFlightTTL(t *testing.T) {
	ms := strconv.FormatInt(inFlightTTL.Milliseconds(), 10)
	for name, src := range map[string]string{"fn_mark.lua": fnMark, "deliver.lua": luaDeliver} {
		if n := strings.Count(src, ms); n != 2 {
			t.Errorf("%s holds %s ms (inFlightTTL) %d times, want 2 (the score and the key's expiry)", name, ms, n)
		}
	}
}
