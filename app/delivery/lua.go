package delivery

import (
	_ "embed"
	"strings"

	"github.com/pushdesk/pushdesk/internal/luascript"
)

// The scripts, in lua/. The fn_*.lua files define functions scripts put
// before their own source:
//   - fn_now: now, the Redis server's time in unix ms, the clock every
//     in-flight mark is scored against;
//   - fn_mark: mark(key, id), id in flight until inFlightTTL from now, the
//     key's lapsed marks pruned (needs fn_now);
//   - fn_bump: bump(key), the user's version moves on. The key lives
//     versionTTL from when it was made: a version only has to hold still
//     for the length of one rebuild, so refreshing it on every bump would
//     be a write for nothing.
//
// The Lua holds some of this package's constants as literals (the
// unacked field, the TTLs); TestLuaUsesTheConstants pins them.
var (
	//go:embed lua/fn_now.lua
	fnNow string
	//go:embed lua/fn_mark.lua
	fnMark string
	//go:embed lua/fn_bump.lua
	fnBump string
	//go:embed lua/deliver.lua
	luaDeliver string
	//go:embed lua/flying.lua
	luaFlying string
	//go:embed lua/mark.lua
	luaMark string
	//go:embed lua/clear.lua
	luaClear string
	//go:embed lua/adjust.lua
	luaAdjust string
	//go:embed lua/fill.lua
	luaFill string
	//go:embed lua/reset.lua
	luaReset string
)

// script is src after the functions it uses.
func script(src string, fns ...string) *luascript.Script {
	return luascript.New(strings.Join(fns, "") + src)
}
