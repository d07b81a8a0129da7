package app

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// luaScript is a Lua script for Redis. Exec is rueidis's (EVALSHA, EVAL on
// NOSCRIPT). ExecMulti is ours: rueidis's ExecMulti sends SCRIPT LOAD and
// waits for it before every pipeline, one extra round trip on each
// delivery; this one pipelines EVALSHAs and falls back to EVAL only for
// the calls Redis answered NOSCRIPT (those did not run).
type luaScript struct {
	*rueidis.Lua
	src string
	sha string
}

func newLuaScript(src string) *luaScript {
	sum := sha1.Sum([]byte(src))
	return &luaScript{Lua: rueidis.NewLuaScript(src), src: src, sha: hex.EncodeToString(sum[:])}
}

// ExecMulti runs the script once per exec in one pipeline.
func (s *luaScript) ExecMulti(ctx context.Context, c rueidis.Client, multi ...rueidis.LuaExec) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(multi))
	for i, m := range multi {
		cmds[i] = c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(m.Keys))).Key(m.Keys...).Arg(m.Args...).Build()
	}
	res := c.DoMulti(ctx, cmds...)
	var again rueidis.Commands
	var at []int
	for i, r := range res {
		if err, ok := rueidis.IsRedisErr(r.Error()); ok && err.IsNoScript() {
			m := multi[i]
			again = append(again, c.B().Eval().Script(s.src).Numkeys(int64(len(m.Keys))).Key(m.Keys...).Arg(m.Args...).Build())
			at = append(at, i)
		}
	}
	if len(again) > 0 {
		for j, r := range c.DoMulti(ctx, again...) {
			res[at[j]] = r
		}
	}
	return res
}
