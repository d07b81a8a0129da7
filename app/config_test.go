package app

import (
	"strings"
	"testing"
)

func TestConfigRejectsBadNumbers(t *testing.T) {
	for _, tc := range []struct{ env, val string }{
		{"PUSHDESK_WORKER_LOOPS", "0"},
		{"PUSHDESK_WORKER_LOOPS", "65"},
		{"PUSHDESK_WORKER_LOOPS", "four"},
		{"PUSHDESK_WORKER_CONCURRENCY", "-1"},
		{"PUSHDESK_MYSQL_MAX_CONNS", "x"},
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
	if err != nil || c.WorkerLoops != 4 {
		t.Fatalf("default: loops %d, err %v; want 4", c.WorkerLoops, err)
	}
	t.Setenv("PUSHDESK_WORKER_LOOPS", "2")
	if c, err = ConfigFromEnv(); err != nil || c.WorkerLoops != 2 {
		t.Fatalf("loops %d, err %v; want 2", c.WorkerLoops, err)
	}
}
