package handlers

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/jobs"
)

// A worker stopping while a delivery waits on its commit must not let that
// delivery run again as a first attempt: the message was counted already,
// and a second first attempt would count it twice. The delivery is
// cancelled before asynq's own deadline, fails, and its retry rebuilds the
// counts instead.
func TestShutdownMidDeliveryCountsOnce(t *testing.T) {
	redisURL := testsvc.Redis(t) // a queue of its own: the shared test server must not take the task
	config := func(c *app.Config) {
		c.RedisURL, c.RunWorkers, c.WorkerShutdown = redisURL, true, 2*time.Second
	}
	s1 := startServer(t, config)
	base1 := "http://" + s1.Addr()
	h := newCommitHold(t)
	// The user's counter hash exists (a delivery only counts into one).
	if code, b := doAt(t, base1, http.MethodGet, "/api/v1/me/unread", mint(t, h.uid), ""); code != 200 || b["total"] != float64(0) {
		t.Fatalf("unread = %d %v, want 0", code, b)
	}
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+s1.Addr()+"/ws?token="+mint(t, h.uid), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ws := &wsClient{tb: t, conn: conn}
	ws.until("hello")

	release := h.hold()
	code, body := doAt(t, base1, http.MethodPost, "/internal/v1/messages", testIngestKey,
		fmt.Sprintf(`{"to_uids":[%d,%d],"kind":"comment","body":{"text":"mid-shutdown"}}`, h.blocker, h.uid))
	if code != 202 {
		t.Fatalf("ingest = %d %v", code, body)
	}
	if u := ws.until("unread"); u.num("total") != 1 { // counted and pushed, commit held
		t.Fatalf("unread frame = %v, want total 1", u)
	}
	// Stop the worker while the commit is held; let it go only after
	// asynq's shutdown deadline has passed.
	time.AfterFunc(3*time.Second, release)
	s1.Shutdown(context.Background())

	s2 := startServer(t, config)
	inspect := asynq.NewInspector(redisOpt(t, redisURL))
	defer inspect.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		q, err := inspect.GetQueueInfo(jobs.QueueFast)
		if err == nil && q.Pending+q.Active+q.Scheduled+q.Retry == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained: %+v %v", q, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, b := doAt(t, "http://"+s2.Addr(), http.MethodGet, "/api/v1/me/unread", mint(t, h.uid), ""); code != 200 || b["total"] != float64(1) {
		t.Fatalf("unread after the restart = %d %v, want total 1", code, b)
	}
	if n := countRows(t, h.uid); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}

// Every delivery is an asynq task a worker runs: after n ingest calls,
// each pushed before the next is made, the fast queue (what asynqmon
// shows) has processed exactly n tasks and holds none.
func TestDeliveriesRunAsAsynqTasks(t *testing.T) {
	redisURL := testsvc.Redis(t) // a queue of its own: the shared test server must not take the task
	s := startServer(t, func(c *app.Config) { c.RedisURL, c.RunWorkers = redisURL, true })
	uid := newUID()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token="+mint(t, uid), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ws := &wsClient{tb: t, conn: conn}
	ws.until("hello")
	const n = 5
	for i := range n {
		code, body := doAt(t, "http://"+s.Addr(), http.MethodPost, "/internal/v1/messages", testIngestKey,
			fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":"queued %d"}}`, uid, i))
		if code != 202 {
			t.Fatalf("ingest = %d %v", code, body)
		}
		id := body["ids"].([]any)[0].(string)
		if m := ws.until("msg"); m.str("id") != id {
			t.Fatalf("msg = %v, want %s", m, id)
		}
		if u := ws.until("unread"); u.num("total") != int64(i+1) {
			t.Fatalf("unread = %v, want total %d", u, i+1)
		}
	}
	waitRows(t, uid, n)
	inspect := asynq.NewInspector(redisOpt(t, redisURL))
	defer inspect.Close()
	deadline := time.Now().Add(5 * time.Second) // a task is done a moment after its commit
	for {
		q, err := inspect.GetQueueInfo(jobs.QueueFast)
		if err == nil && q.Processed == n && q.Size == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fast queue = %+v, %v; want %d tasks processed by the workers and none left", q, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func redisOpt(t *testing.T, url string) asynq.RedisConnOpt {
	t.Helper()
	opt, err := asynq.ParseRedisURI(url)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}
