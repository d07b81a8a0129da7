package clustertest

import (
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func withEnv(kv ...string) instanceOpt {
	return func(env []string) []string { return append(env, kv...) }
}

// The built binary, as fly.toml runs it split: a web-only `pushdesk serve`
// (PUSHDESK_WORKERS=0) and a `pushdesk worker` process, sharing a
// redis-server of the test's own (so no other test's workers can take the
// task) and a database of its own. The web process alone only queues: a
// message posted before the worker runs does not arrive. Once the worker
// runs it delivers that one and the next, through the web process's
// WebSocket; its one listener has health and metrics only, and SIGTERM
// stops it cleanly.
func TestWebOnlyServeBesideAWorkerProcess(t *testing.T) {
	rds := startRedis(t)
	dsn := freshDatabase(t, "pushdesk_e2e_split")
	web := startInstance(t, "web", rds.url(), dsn, withEnv("PUSHDESK_WORKERS=0"))
	user := newUID()
	c := dial(t, web, user)

	queued := web.post(t, user, "queued while no worker runs")
	if c.waitMsg(queued, 3*time.Second) {
		t.Fatal("a web-only serve delivered a message itself: PUSHDESK_WORKERS=0 ran workers")
	}

	// PUSHDESK_WORKERS=0 in the worker's environment too: it must not
	// turn the worker's own loops off.
	worker := startCommand(t, "worker", "worker", rds.url(), dsn, withEnv("PUSHDESK_WORKERS=0"))
	if !c.waitMsg(queued, 15*time.Second) {
		t.Fatal("the message queued before the worker started never arrived")
	}
	live := web.post(t, user, "while the worker runs")
	if !c.waitMsg(live, 10*time.Second) {
		t.Fatal("a message posted while the worker runs never arrived")
	}

	base := "http://" + worker.addr
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/ws": 404, "/internal/v1/stats": 404} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("worker GET %s = %d, want %d", path, res.StatusCode, want)
		}
	}
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(metrics), "pushdesk_queue_latency_seconds_count") ||
		strings.Contains(string(metrics), "pushdesk_queue_latency_seconds_count 0\n") {
		t.Error("the worker's /metrics counts no task it ran")
	}

	_ = worker.cmd.Process.Signal(syscall.SIGTERM)
	if !worker.waitExit(30 * time.Second) {
		t.Fatal("the worker did not stop within 30 s of SIGTERM")
	}
	if code := worker.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the worker exited with %d after SIGTERM, want 0", code)
	}
	log, _ := os.ReadFile(worker.log)
	for _, want := range []string{"pushdesk worker started: no public listener", "queue workers on", `"msg":"stopped"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the worker's log lacks %q", want)
		}
	}
}
