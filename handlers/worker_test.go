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
)

// A web-only serve (PUSHDESK_WORKERS=0) beside a `pushdesk worker`: the
// web process only queues, the worker delivers, and the push reaches the
// web process's client. The pair has a redis-server of its own, so the
// shared test server's workers cannot take the task, and the worker's
// poll is a minute long, so only a wake across processes delivers it in
// time.
func TestWebOnlyServeBesideAWorkerDeliversEndToEnd(t *testing.T) {
	redisURL := testsvc.Redis(t)
	cfg := srv.App.Cfg
	cfg.RedisURL, cfg.InstanceID, cfg.QueuePoll = redisURL, "", time.Minute
	wcfg := cfg
	wcfg.Addr, wcfg.InternalAddr, wcfg.HealthAddr = "", "", "127.0.0.1:0"
	wa, err := app.New(context.Background(), wcfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	worker, err := NewWorker(wa)
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { worker.Shutdown(context.Background()) })
	web := startServer(t, func(c *app.Config) { c.RedisURL, c.RunWorkers = redisURL, false })

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

	uid := newUID()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+web.Addr()+"/ws?token="+mint(t, uid), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ws := &wsClient{tb: t, conn: conn}
	ws.until("hello")
	code, body := doAt(t, "http://"+web.Addr(), http.MethodPost, "/internal/v1/messages", testIngestKey,
		fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":"via the worker"}}`, uid))
	if code != 202 {
		t.Fatalf("ingest = %d %v", code, body)
	}
	if m := ws.until("msg"); m.str("kind") != "comment" {
		t.Fatalf("msg = %v", m)
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
