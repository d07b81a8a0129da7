package handlers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/jobs"
)

// A web-only serve (PUSHDESK_WORKERS=0) beside a `pushdesk worker`: the
// web process only queues, the worker delivers, and the push reaches the
// web process's client. The pair has a redis-server of its own, so the
// shared test server's workers cannot take the task, and only a wake
// across processes delivers it in time: the worker's loop that polls both
// queues sleeps at least half its poll between polls (asynq sleeps
// poll/2 plus up to one poll more), its first poll is at Start, and its
// fast loops, once waiting, wait jobs.FastIdleWait for a wake. So a push
// that arrives within half a poll of Start was woken.
//
// The poll is 3 s, not longer: asynq cannot stop a loop in the middle of
// that sleep, so the worker's shutdown waits out the rest of it (with a
// minute-long poll this test once spent up to 90 s there).
func TestWebOnlyServeBesideAWorkerDeliversEndToEnd(t *testing.T) {
	t.Parallel()
	redisURL := testsvc.Redis(t)
	web := startServer(t, func(c *app.Config) { c.RedisURL, c.RunWorkers = redisURL, false })
	uid := newUID()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+web.Addr()+"/ws?token="+mint(t, uid), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ws := &wsClient{tb: t, conn: conn}
	ws.until("hello")

	wcfg := srv.App.Cfg
	wcfg.RedisURL, wcfg.InstanceID, wcfg.QueuePoll = redisURL, "", 3*time.Second
	wcfg.Addr, wcfg.InternalAddr, wcfg.HealthAddr = "", "", "127.0.0.1:0"
	worker, err := newWorkerProcess(wcfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { worker.Shutdown(context.Background()) })
	// The first fast loop has found the queue empty and waits for a wake
	// (the others start on demand).
	waitFor(t, "the worker's fast loops to wait", func() bool {
		return worker.jobs.(jobs.Bound).Waiting() >= 1
	})

	code, body := doAt(t, "http://"+web.Addr(), http.MethodPost, "/internal/v1/messages", testIngestKey,
		fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":"via the worker"}}`, uid))
	if code != 202 {
		t.Fatalf("ingest = %d %v", code, body)
	}
	if m := ws.until("msg"); m.str("kind") != "comment" {
		t.Fatalf("msg = %v", m)
	}
	if took, poll := time.Since(started), wcfg.QueuePoll/2; took >= poll {
		t.Fatalf("the push came %v after the worker started, when its poll could have found the task (%v); want a wake to deliver it sooner", took, poll)
	}

	// The worker's one listener has health and metrics, and nothing else.
	wbase := "http://" + worker.Addr()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/ws": 404, "/internal/v1/stats": 404, "/admin/queues/": 404} {
		res, err := http.Get(wbase + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("worker GET %s = %d, want %d", path, res.StatusCode, want)
		}
	}
	// The worker ran the task: its queue latency histogram counted it.
	res, err := http.Get(wbase + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "pushdesk_queue_latency_seconds_count 1") {
		t.Fatalf("the worker's /metrics shows no task taken:\n%s", grepLines(string(b), "pushdesk_queue_latency_seconds_count"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
