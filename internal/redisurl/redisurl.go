// Package redisurl reads the Redis Cluster form of PUSHDESK_REDIS_URL,
// which neither rueidis nor asynq parses: the scheme redis+cluster:// (or
// rediss+cluster:// for TLS) and the seed nodes' addresses separated by
// commas, for example
//
//	redis+cluster://user:secret@10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379/
//
// Any other URL is not a cluster's and is left to the libraries' own
// parsers. The scheme is explicit, not detected, because the process must
// know before it connects whether keys must share hash slots and pub/sub
// is sharded (docs/operations.md). It owns no connection.
package redisurl

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// The cluster schemes.
const (
	Scheme    = "redis+cluster"
	SchemeTLS = "rediss+cluster"
)

// Cluster is a parsed cluster URL.
type Cluster struct {
	// Addrs are the seed nodes, host:port each (port 6379 when left out);
	// the clients learn the rest of the cluster from any of them.
	Addrs    []string
	Username string
	Password string
	TLS      bool
}

// IsCluster reports whether raw has a cluster scheme.
func IsCluster(raw string) bool {
	return strings.HasPrefix(raw, Scheme+"://") || strings.HasPrefix(raw, SchemeTLS+"://")
}

// Parse reads a cluster URL. A database other than 0 is refused: a
// cluster has only database 0. Errors never repeat the password.
func Parse(raw string) (Cluster, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || (scheme != Scheme && scheme != SchemeTLS) {
		return Cluster{}, fmt.Errorf("not a %s:// URL", Scheme)
	}
	c := Cluster{TLS: scheme == SchemeTLS}
	hosts, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		info := hosts[:at]
		hosts = hosts[at+1:]
		user, pass, _ := strings.Cut(info, ":")
		var err error
		if c.Username, err = url.PathUnescape(user); err != nil {
			return Cluster{}, fmt.Errorf("cluster URL: bad user name")
		}
		if c.Password, err = url.PathUnescape(pass); err != nil {
			return Cluster{}, fmt.Errorf("cluster URL: bad password")
		}
	}
	for h := range strings.SplitSeq(hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, "6379")
		}
		c.Addrs = append(c.Addrs, h)
	}
	if len(c.Addrs) == 0 {
		return Cluster{}, fmt.Errorf("cluster URL names no node")
	}
	if db, _, _ := strings.Cut(path, "?"); db != "" && db != "0" {
		return Cluster{}, fmt.Errorf("cluster URL names database %q: a cluster has only database 0", db)
	}
	return c, nil
}
