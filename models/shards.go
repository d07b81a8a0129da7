package models

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/uptrace/bun"
)

// ShardServer is one database holding some of the shard tables.
type ShardServer struct {
	DB *bun.DB
	// Name is host:port/database, for logs and errors (never a password).
	Name string
	// Shards are the shard numbers it holds, ascending.
	Shards []int
	own    bool // opened by OpenShards (else it is the main pool)
}

// Ranges renders Shards as "0-63,100".
func (s *ShardServer) Ranges() string {
	var b strings.Builder
	for i := 0; i < len(s.Shards); {
		j := i
		for j+1 < len(s.Shards) && s.Shards[j+1] == s.Shards[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(s.Shards[i]))
		if j > i {
			b.WriteString("-" + strconv.Itoa(s.Shards[j]))
		}
		i = j + 1
	}
	return b.String()
}

// Shards says which database holds each shard table (the shard map,
// PUSHDESK_MYSQL_SHARDS). A nil *Shards means every shard is in the main
// database. Its fields are set by OpenShards and never after.
type Shards struct {
	Servers []*ShardServer
	of      [ShardCount]int // shard → index in Servers
}

// shardDialTimeout bounds a connect to a shard server whose DSN sets no
// timeout: a server that is gone (not refusing, just silent) fails its
// users' queries within it instead of holding them for the OS's TCP
// timeout.
const shardDialTimeout = 5 * time.Second

// OpenShards makes a pool for each database of ranges; a range whose DSN
// is mainDSN uses main. With connect false the pools are made without
// touching the network, so a shard server that is down does not stop the
// process (its users' queries fail until it is back); with connect true
// each database is created if missing and pinged, and the first server
// that fails is an error naming it (for migrate).
func OpenShards(ctx context.Context, main *bun.DB, mainDSN string, ranges []ShardRange, maxConns int, connect bool) (*Shards, error) {
	s := &Shards{}
	byDSN := map[string]int{}
	for _, r := range ranges {
		idx, ok := byDSN[r.DSN]
		if !ok {
			srv, err := openShardServer(ctx, main, mainDSN, r.DSN, maxConns, connect)
			if err != nil {
				s.Close()
				return nil, err
			}
			idx = len(s.Servers)
			byDSN[r.DSN] = idx
			s.Servers = append(s.Servers, srv)
		}
		for sh := r.From; sh <= r.To; sh++ {
			s.of[sh] = idx
			s.Servers[idx].Shards = append(s.Servers[idx].Shards, sh)
		}
	}
	for _, srv := range s.Servers {
		sort.Ints(srv.Shards)
	}
	return s, nil
}

func openShardServer(ctx context.Context, main *bun.DB, mainDSN, dsn string, maxConns int, connect bool) (*ShardServer, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ShardMapVar, err)
	}
	name := cfg.Addr + "/" + cfg.DBName
	if dsn == mainDSN {
		return &ShardServer{DB: main, Name: name}, nil
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = shardDialTimeout
	}
	db, err := open(ctx, cfg, maxConns, connect)
	if err != nil {
		return nil, fmt.Errorf("%s: shard server %s: %w", ShardMapVar, name, err)
	}
	return &ShardServer{DB: db, Name: name, own: true}, nil
}

// Of is the server holding shard (0..ShardCount-1).
func (s *Shards) Of(shard int) *ShardServer { return s.Servers[s.of[shard]] }

// IndexOf is the index in Servers of the server holding shard.
func (s *Shards) IndexOf(shard int) int { return s.of[shard] }

// Ping pings every shard server within timeout each and returns the ones
// that did not answer, joined (nil when all did).
func (s *Shards) Ping(ctx context.Context, timeout time.Duration) error {
	var errs []error
	for _, srv := range s.Servers {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		if err := srv.DB.PingContext(pctx); err != nil {
			errs = append(errs, fmt.Errorf("shard server %s (shards %s): %w", srv.Name, srv.Ranges(), err))
		}
		cancel()
	}
	return errors.Join(errs...)
}

// Close closes the pools OpenShards opened (not the main one).
func (s *Shards) Close() {
	if s == nil {
		return
	}
	for _, srv := range s.Servers {
		if srv.own {
			srv.DB.Close()
		}
	}
}
