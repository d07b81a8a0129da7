// Package luascript runs Lua scripts on Redis through rueidis's public API,
// pipelining many calls of one script without a SCRIPT LOAD before each.
package luascript

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"

	"github.com/redis/rueidis"
)

// Script is a Lua script for Redis. Exec is rueidis's (EVALSHA, EVAL on
// NOSCRIPT). ExecMulti is ours: rueidis's ExecMulti sends SCRIPT LOAD and
// waits for it before every pipeline, one extra round trip on each
// delivery; this one pipelines EVALSHAs and falls back to EVAL only for
// the calls Redis answered NOSCRIPT (those did not run).
type Script struct {
	*rueidis.Lua
	src string
	sha string
}

// New returns the script whose source is src.
func New(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{Lua: rueidis.NewLuaScript(src), src: src, sha: hex.EncodeToString(sum[:])}
}

// ExecMulti runs the script once per exec in one pipeline.
func (s *Script) ExecMulti(ctx context.Context, c rueidis.Client, multi ...rueidis.LuaExec) []rueidis.RedisResult {
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

// IntPairs calls fn with each field and value of a hash reply: a flat
// array (as scripts return hashes) or a map.
func IntPairs(m rueidis.RedisMessage, fn func(k string, v int64)) error {
	if m.IsMap() {
		h, err := m.AsIntMap()
		for k, v := range h {
			fn(k, v)
		}
		return err
	}
	arr, err := m.ToArray()
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(arr); i += 2 {
		k, err := arr[i].ToString()
		if err != nil {
			return err
		}
		v, err := arr[i+1].AsInt64()
		if err != nil {
			return fmt.Errorf("hash field %q: %w", k, err)
		}
		fn(k, v)
	}
	return nil
}
