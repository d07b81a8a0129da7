package models

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// ShardMapVar is the environment variable that holds the shard map.
const ShardMapVar = "PUSHDESK_MYSQL_SHARDS"

// ShardRange is one entry of the shard map: shard tables From..To
// (inclusive, of 0..ShardCount-1) live in the database DSN names.
type ShardRange struct {
	From, To int
	DSN      string
}

// ParseShardMap reads a shard map of the form
// "0-63=<dsn>;64-127=<dsn>" (a lone number is a range of one shard).
// The ranges must cover every shard exactly once, and each DSN must parse
// in go-sql-driver form and name a database. Errors name ShardMapVar and
// never quote a DSN (it may hold a password). An empty map is nil.
func ParseShardMap(s string) ([]ShardRange, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []ShardRange
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		span, dsn, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%s: entry %d: want FROM-TO=DSN", ShardMapVar, i+1)
		}
		r, err := parseSpan(strings.TrimSpace(span))
		if err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", ShardMapVar, i+1, err)
		}
		dsn = strings.TrimSpace(dsn)
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			return nil, fmt.Errorf("%s: shards %d-%d: the DSN does not parse in go-sql-driver form (user:pass@tcp(host:port)/db)", ShardMapVar, r.From, r.To)
		}
		if cfg.DBName == "" {
			return nil, fmt.Errorf("%s: shards %d-%d: the DSN names no database", ShardMapVar, r.From, r.To)
		}
		r.DSN = dsn
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no ranges", ShardMapVar)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From < out[j].From })
	next := 0
	for _, r := range out {
		switch {
		case r.From < next:
			return nil, fmt.Errorf("%s: shards %d-%d overlap the range before them (which ends at %d)", ShardMapVar, r.From, r.To, next-1)
		case r.From > next:
			return nil, fmt.Errorf("%s: shards %d-%d are in no range", ShardMapVar, next, r.From-1)
		}
		next = r.To + 1
	}
	if next < ShardCount {
		return nil, fmt.Errorf("%s: shards %d-%d are in no range", ShardMapVar, next, ShardCount-1)
	}
	return out, nil
}

func parseSpan(s string) (ShardRange, error) {
	a, b, isRange := strings.Cut(s, "-")
	from, err := strconv.Atoi(strings.TrimSpace(a))
	if err != nil {
		return ShardRange{}, fmt.Errorf("%q is not a shard range (want FROM-TO, such as 0-63)", s)
	}
	to := from
	if isRange {
		if to, err = strconv.Atoi(strings.TrimSpace(b)); err != nil {
			return ShardRange{}, fmt.Errorf("%q is not a shard range (want FROM-TO, such as 0-63)", s)
		}
	}
	if from < 0 || to >= ShardCount || from > to {
		return ShardRange{}, fmt.Errorf("shard range %q: want 0 <= FROM <= TO <= %d", s, ShardCount-1)
	}
	return ShardRange{From: from, To: to}, nil
}

// Passwords returns the passwords of the map's DSNs (for redaction).
func Passwords(ranges []ShardRange) []string {
	var out []string
	for _, r := range ranges {
		if cfg, err := mysql.ParseDSN(r.DSN); err == nil && cfg.Passwd != "" {
			out = append(out, cfg.Passwd)
		}
	}
	return out
}
