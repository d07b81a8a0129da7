package app

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigRejectsBadNumbers(t *testing.T) {
	for _, tc := range []struct{ env, val string }{
		{"PUSHDESK_WORKER_LOOPS", "0"},
		{"PUSHDESK_WORKER_LOOPS", "65"},
		{"PUSHDESK_WORKER_LOOPS", "four"},
		{"PUSHDESK_WORKER_CONCURRENCY", "-1"},
		{"PUSHDESK_MYSQL_MAX_CONNS", "x"},
		{"PUSHDESK_INGEST_LINGER", "-1ms"},
		{"PUSHDESK_INGEST_LINGER", "soon"},
	} {
		t.Run(tc.env+"="+tc.val, func(t *testing.T) {
			t.Setenv(tc.env, tc.val)
			if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), tc.env) {
				t.Fatalf("err = %v, want one naming %s", err, tc.env)
			}
		})
	}
}

func TestConfigWorkerLoops(t *testing.T) {
	t.Setenv("PUSHDESK_WORKER_LOOPS", "")
	c, err := ConfigFromEnv()
	c.fillDefaults()
	if err != nil || c.WorkerLoops != 8 {
		t.Fatalf("default: loops %d, err %v; want 8", c.WorkerLoops, err)
	}
	t.Setenv("PUSHDESK_WORKER_LOOPS", "2")
	if c, err = ConfigFromEnv(); err != nil || c.WorkerLoops != 2 {
		t.Fatalf("loops %d, err %v; want 2", c.WorkerLoops, err)
	}
}

func TestConfigIngestLinger(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Duration
	}{{"", time.Millisecond}, {"5ms", 5 * time.Millisecond}, {"0", -1}} {
		t.Setenv("PUSHDESK_INGEST_LINGER", tc.env)
		c, err := ConfigFromEnv()
		c.fillDefaults()
		if err != nil || c.IngestLinger != tc.want {
			t.Errorf("PUSHDESK_INGEST_LINGER=%q: %v, %v; want %v", tc.env, c.IngestLinger, err, tc.want)
		}
	}
}

// A bad shard map stops the start with an error naming the variable (and
// not the password of a DSN in it); a good one is kept, its passwords
// registered for redaction; none at all changes nothing.
func TestConfigShardMap(t *testing.T) {
	t.Setenv("PUSHDESK_MYSQL_SHARDS", "0-63=u:sekrit1@tcp(a:3306)/pd;63-127=u:sekrit1@tcp(b:3306)/pd")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "PUSHDESK_MYSQL_SHARDS") || strings.Contains(err.Error(), "sekrit1") {
		t.Fatalf("overlap: %v", err)
	}
	good := "0-63=u:sekrit2@tcp(a:3306)/pd;64-127=u:sekrit2@tcp(b:3306)/pd"
	t.Setenv("PUSHDESK_MYSQL_SHARDS", good)
	c, err := ConfigFromEnv()
	if err != nil || c.MySQLShards != good {
		t.Fatalf("good map: %q %v", c.MySQLShards, err)
	}
	if got := RedactError(errors.New("dial u:sekrit2@tcp(b)")).Error(); strings.Contains(got, "sekrit2") {
		t.Fatalf("a shard DSN's password is not redacted: %s", got)
	}
	c.MySQLShards, c.JWTSecret, c.IngestKey = "0-127=nonsense", "s", "k"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "PUSHDESK_MYSQL_SHARDS") {
		t.Fatalf("Validate of a bad map: %v", err)
	}
	t.Setenv("PUSHDESK_MYSQL_SHARDS", "")
	if c, err := ConfigFromEnv(); err != nil || c.MySQLShards != "" {
		t.Fatalf("no map: %q %v", c.MySQLShards, err)
	}
}
