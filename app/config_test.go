package app

import (
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
