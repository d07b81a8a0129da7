package clustertest

import (
	"database/sql"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func presence(tb testing.TB, in *instance, uid uint64) (online bool, conns int) {
	tb.Helper()
	code, body := in.request(tb, http.MethodGet, fmt.Sprintf("/internal/v1/users/%d/presence", uid), ingestKey, "")
	if code != 200 {
		tb.Fatalf("presence = %d %v", code, body)
	}
	return body["online"].(bool), int(body["connections"].(float64))
}

func stats(tb testing.TB, in *instance) map[string]any {
	tb.Helper()
	code, body := in.request(tb, http.MethodGet, "/internal/v1/stats", ingestKey, "")
	if code != 200 {
		tb.Fatalf("stats = %d %v", code, body)
	}
	return body
}

func instanceIDs(st map[string]any) map[string]bool {
	out := map[string]bool{}
	for _, i := range st["instances"].([]any) {
		out[i.(map[string]any)["id"].(string)] = true
	}
	return out
}

// eventually polls cond every 250 ms until it holds or d passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not true within %v", what, d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestThreeInstances(t *testing.T) {
	rds := startRedis(t)
	dsn := freshDatabase(t, "pushdesk_e2e_cluster")
	i1 := startInstance(t, "i1", rds.url(), dsn)
	i2 := startInstance(t, "i2", rds.url(), dsn)
	i3 := startInstance(t, "i3", rds.url(), dsn)

	user := newUID()
	phone := dial(t, i2, user)
	browser := dial(t, i3, user)

	t.Run("a message posted to instance 1 reaches devices on 2 and 3", func(t *testing.T) {
		id := i1.post(t, user, "hello both")
		if !phone.waitMsg(id, 10*time.Second) || !browser.waitMsg(id, 10*time.Second) {
			t.Fatalf("message %s did not reach both devices", id)
		}
		if online, n := presence(t, i1, user); !online || n != 2 {
			t.Fatalf("presence = %v %d, want online with 2", online, n)
		}
		if st := stats(t, i1); st["connections"].(float64) != 2 || st["online_users"].(float64) != 1 {
			t.Fatalf("stats = %v, want 2 connections, 1 user", st)
		}
	})

	t.Run("a broadcast posted to instance 1 reaches every instance once", func(t *testing.T) {
		others := []*client{dial(t, i1, newUID()), dial(t, i3, newUID())}
		code, body := i1.request(t, http.MethodPost, "/internal/v1/broadcasts", ingestKey,
			fmt.Sprintf(`{"segment":"all","kind":"system","body":{"n":%d}}`, user))
		if code != 202 {
			t.Fatalf("broadcast = %d %v", code, body)
		}
		id := body["id"].(string)
		for i, c := range append([]*client{phone, browser}, others...) {
			if !c.waitMsg(id, 10*time.Second) {
				t.Fatalf("client %d did not get broadcast %s", i, id)
			}
		}
		for _, c := range others {
			c.conn.Close()
		}
	})

	t.Run("Redis restart: delivery resumes by itself", func(t *testing.T) {
		rds.stop()
		time.Sleep(500 * time.Millisecond)
		rds.start()
		id := i1.post(t, user, "after restart") // retried while the instance still reconnects
		if !phone.waitMsg(id, 20*time.Second) || !browser.waitMsg(id, 20*time.Second) {
			t.Fatalf("message %s after the Redis restart did not reach both devices", id)
		}
	})

	t.Run("Redis loses its data: instances re-register their connections", func(t *testing.T) {
		rds.loseData() // this test's own redis-server, killed and started empty
		eventually(t, 20*time.Second, "registry rebuilt", func() bool {
			online, n := presence(t, i1, user)
			return online && n == 2
		})
		id := i1.post(t, user, "after data loss")
		if !phone.waitMsg(id, 10*time.Second) || !browser.waitMsg(id, 10*time.Second) {
			t.Fatalf("message %s after the data loss did not reach both devices", id)
		}
	})

	t.Run("kill -9 of instance 3 is cleaned up within 60 s", func(t *testing.T) {
		i3.kill()
		start := time.Now()
		eventually(t, 60*time.Second, "registry forgets i3", func() bool {
			online, n := presence(t, i1, user)
			st := stats(t, i1)
			return online && n == 1 && !instanceIDs(st)["i3"] && st["connections"].(float64) == 1 && st["online_users"].(float64) == 1
		})
		t.Logf("cleaned up %v after the kill", time.Since(start).Round(time.Second))
		id := i1.post(t, user, "after the crash")
		if !phone.waitMsg(id, 10*time.Second) {
			t.Fatalf("message %s did not reach the surviving device", id)
		}
	})

	t.Run("SIGTERM of instance 2 during a stream loses nothing", func(t *testing.T) {
		other := newUID()
		c := dial(t, i2, other)
		var mu sync.Mutex
		var posted []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 60 {
				id := i1.post(t, other, fmt.Sprint("stream ", i))
				mu.Lock()
				posted = append(posted, id)
				mu.Unlock()
				time.Sleep(15 * time.Millisecond)
			}
		}()
		got := map[string]bool{}
		// Read until instance 2 says goodbye.
		time.Sleep(200 * time.Millisecond)
		i2.terminate()
		code := 0
	read:
		for {
			select {
			case f, ok := <-c.frames:
				if !ok {
					break read
				}
				if f["type"] == "msg" {
					got[f["id"].(string)] = true
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no close from the terminating instance in 15 s")
			}
		}
		code = <-c.closed
		if code != 1012 {
			t.Fatalf("close code = %d, want 1012 (service restart)", code)
		}
		if !i2.waitExit(30 * time.Second) {
			t.Fatal("instance 2 did not exit within 30 s of SIGTERM")
		}
		// Reconnect to instance 1, as a client does on 1012.
		again := dial(t, i1, other)
		<-done
		mu.Lock()
		want := append([]string(nil), posted...)
		mu.Unlock()
		deadline := time.Now().Add(15 * time.Second)
		missing := func() []string {
			var m []string
			for _, id := range want {
				if !got[id] {
					m = append(m, id)
				}
			}
			return m
		}
		for len(missing()) > 0 && time.Now().Before(deadline) {
			if f := again.next(time.Second); f != nil && f["type"] == "msg" {
				got[f["id"].(string)] = true
			}
		}
		if m := missing(); len(m) > 0 {
			t.Fatalf("%d of %d messages never reached the client: %v", len(m), len(want), m)
		}
	})
}

func TestWorkerKilledMidDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for asynq's lease to expire (about a minute)")
	}
	rds := startRedis(t)
	dsn := freshDatabase(t, "pushdesk_e2e_worker_kill")
	w1 := startInstance(t, "w1", rds.url(), dsn)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	uid := newUID()
	table := fmt.Sprintf("user_push_msg_%d", uid%128)

	// Two more users of the same shard are connected (before the hold: a
	// connect reads the shard). Their messages are pushed before the held
	// commit, and both read everything after the crash, before the
	// recovered task commits: one at once, one after nearly a minute (the
	// in-flight marks of a dead worker lapsed after a minute once, and a
	// read-all then was undone by the late commit).
	readers := []uint64{uid + 128, uid + 256}
	rcs := make([]*client, len(readers))
	for i, r := range readers {
		rcs[i] = dial(t, w1, r)
	}

	// Hold the shard so the worker blocks inside its write.
	lock, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close() // a failure before the unlock must not hold the database's drop
	if _, err := lock.ExecContext(t.Context(), "LOCK TABLES "+table+" WRITE"); err != nil {
		t.Fatal(err)
	}
	for i, r := range readers {
		if id := w1.post(t, r, "read before its commit"); !rcs[i].waitMsg(id, 10*time.Second) {
			t.Fatal("a reader's message was not pushed before its commit")
		}
	}
	id := w1.post(t, uid, "survives a crash")
	eventually(t, 10*time.Second, "the task is being worked on", func() bool {
		var n int
		_ = db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE ? AND STATE LIKE '%lock%'", "%"+table+"%").Scan(&n)
		return n > 0
	})
	w1.kill()
	killed := time.Now()
	// The dead instance's statements waiting for the shard were sent
	// whole (BEGIN … COMMIT in one exec) and would still run once the
	// lock goes; its connections are ended first, so none of its writes
	// commits and the recovered task is what stores them.
	procs, err := db.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE ? AND STATE LIKE '%lock%'", "%"+table+"%")
	if err != nil {
		t.Fatal(err)
	}
	var waiting []int64
	for procs.Next() {
		var pid int64
		if procs.Scan(&pid) == nil {
			waiting = append(waiting, pid)
		}
	}
	procs.Close()
	for _, pid := range waiting {
		_, _ = db.Exec(fmt.Sprintf("KILL %d", pid))
	}
	_, _ = lock.ExecContext(t.Context(), "UNLOCK TABLES")
	lock.Close()

	w2 := startInstance(t, "w2", rds.url(), dsn)
	stored := func(uid uint64) (n int) {
		_ = db.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE to_uid = ?", uid).Scan(&n)
		return n
	}
	readAll := func(uid uint64) {
		if stored(uid) != 0 {
			t.Fatalf("user %d's message was stored before its read-all: the read shows nothing", uid)
		}
		if code, body := w2.request(t, http.MethodPost, "/api/v1/me/read", token(t, uid), `{"all":true}`); code != 200 {
			t.Fatalf("read-all = %d %v", code, body)
		}
	}
	readAll(readers[0])
	time.Sleep(time.Until(killed.Add(59 * time.Second)))
	readAll(readers[1])
	c := dial(t, w2, uid)
	// asynq hands the task back once its lease (30 s) is 30 s past expiry.
	seen := 0
	deadline := time.Now().Add(150 * time.Second)
	for time.Now().Before(deadline) {
		f := c.next(time.Until(deadline))
		if f == nil {
			break
		}
		if f["type"] == "msg" && f["id"] == id {
			seen++
			break
		}
	}
	if seen != 1 {
		t.Fatal("the message never arrived after the worker was killed")
	}
	// Nothing more for it in the next seconds, and one row.
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		if f := c.next(time.Until(end)); f != nil && f["type"] == "msg" && f["id"] == id {
			t.Fatalf("message %s arrived twice", id)
		}
	}
	var rows int
	if err := db.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE to_uid = ?", uid).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("rows = %d (%v), want 1", rows, err)
	}
	code, body := w2.request(t, http.MethodGet, "/api/v1/me/unread", token(t, uid), "")
	if code != 200 || body["total"].(float64) != 1 {
		t.Fatalf("unread = %d %v, want total 1", code, body)
	}
	// The readers' messages, committed by the recovered task after their
	// read-all, are stored read: the read-all is not undone by the crash.
	for _, r := range readers {
		eventually(t, 60*time.Second, "the reader's message recovered", func() bool { return stored(r) == 1 })
		var read bool
		if err := db.QueryRow("SELECT is_read FROM "+table+" WHERE to_uid = ?", r).Scan(&read); err != nil || !read {
			t.Fatalf("user %d's message after recovery: read %v (%v), want stored and read", r, read, err)
		}
		code, body := w2.request(t, http.MethodGet, "/api/v1/me/unread", token(t, r), "")
		if code != 200 || body["total"].(float64) != 0 {
			t.Fatalf("user %d's unread after the recovery = %d %v, want total 0", r, code, body)
		}
	}
	t.Logf("accepted 3, stored 3 (the two read after the crash stored read), delivered 3, lost 0, twice 0; readers' unread 0")
}
