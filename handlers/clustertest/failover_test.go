package clustertest

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

// A Redis master killed with kill -9 while the main site sends: the
// master holding the fast queue (and a third of every user's keys), so
// the enqueue, the delivery scripts and the pub/sub of its slots all fail
// over to its replica. The main site's retries (same idempotency key) get
// every message accepted once; nothing accepted may be missing from
// MySQL afterwards. Live pushes during the failover may be missed
// (pub/sub is at-most-once); the clients get those from the replay.
func TestRedisClusterMasterKilledLosesNothingAccepted(t *testing.T) {
	d := startClusterDeployment(t, false)
	const users = 8
	var uids []uint64
	got := &tally{frames: map[string]int{}}
	for i := range users {
		uid := newUID()
		uids = append(uids, uid)
		c := dial(t, []*instance{d.i1, d.i2}[i%2], uid)
		go func() {
			for f := range c.frames {
				if f["type"] == "msg" && f["replay"] != true {
					got.add(f["id"].(string))
				}
			}
		}()
	}

	var mu sync.Mutex
	accepted := map[string]uint64{} // message id → its user
	var retried int
	var lastRefusal time.Time // the last answer other than 2xx
	codes := map[int]int{}
	var killed time.Time
	late := map[int]bool{} // messages still refused 15 s after the kill
	send := func(n int) {
		uid := uids[n%users]
		in := []*instance{d.i1, d.i2}[n%2]
		body := fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"n":%d},"idempotency_key":"fo-%d"}`, uid, n, n)
		deadline := time.Now().Add(60 * time.Second)
		for try := 0; ; try++ {
			code, res := in.request(t, http.MethodPost, "/internal/v1/messages", ingestKey, body)
			if code == 202 || code == 200 {
				mu.Lock()
				accepted[res["ids"].([]any)[0].(string)] = uid
				retried += min(try, 1)
				mu.Unlock()
				return
			}
			mu.Lock()
			lastRefusal = time.Now()
			codes[code]++
			if !killed.IsZero() && time.Since(killed) > 15*time.Second {
				late[n] = true
			}
			mu.Unlock()
			if time.Now().After(deadline) {
				t.Errorf("message %d never accepted: %d %v", n, code, res)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // the main site: a message every 10 ms, each call in its own goroutine (2 s timeout, retried)
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			wg.Add(1)
			go func() { defer wg.Done(); send(n) }()
		}
	}()
	time.Sleep(2 * time.Second)
	victim := d.masterOfQueue()
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	d.redis.Kill(victim)
	d.redis.WaitHealthy(30 * time.Second)
	t.Logf("killed master %s (the fast queue's); its replica %s took over in %v", victim, d.masterOfQueue(), time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	// Every accepted message is stored, on its user's shard.
	storedOf := func() (n int, missing []string) {
		for id, uid := range accepted {
			if c, err := stored(d.serverOf(uid), uid, id); err == nil && c == 1 {
				n++
			} else {
				missing = append(missing, id)
			}
		}
		return n, missing
	}
	var storedN int
	var missing []string
	deadline := time.Now().Add(150 * time.Second) // a task that was active on the dead master comes back by asynq's lease recovery
	for {
		if storedN, missing = storedOf(); len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	var rows int
	for _, uid := range uids {
		n, _ := stored(d.serverOf(uid), uid, "")
		rows += n
	}
	delivered, duplicated := 0, 0
	got.mu.Lock()
	for id := range accepted {
		if k := got.frames[id]; k > 0 {
			delivered++
			duplicated += k - 1
		}
	}
	got.mu.Unlock()
	// Enqueues fail until asynq's go-redis cluster client sees the new
	// master (a few seconds after the failover). A call whose idempotency
	// key was claimed on the dead master just before it died keeps its
	// claim on the replica (its release went to the dead master), so its
	// retries wait (503) or are told it is in progress (409) until the
	// claim lapses (30 s).
	t.Logf("refused answers by status (0: no answer) %v, the last %v after the kill; %d messages still refused 15 s after it",
		codes, lastRefusal.Sub(killed).Round(100*time.Millisecond), len(late))
	t.Logf("accepted %d (%d after a retry), stored %d (rows %d), delivered live %d, lost %d, duplicated pushes %d, stored after %v",
		len(accepted), retried, storedN, rows, delivered, len(missing), duplicated, time.Since(killed).Round(time.Second))
	if len(missing) > 0 {
		t.Fatalf("%d accepted messages not stored, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	if rows != len(accepted) {
		t.Fatalf("%d rows for %d accepted messages", rows, len(accepted))
	}

	// The counts and the replay after the failover: each user's unread
	// total is what MySQL holds.
	for _, uid := range uids {
		n, _ := stored(d.serverOf(uid), uid, "")
		if u := unreadTotal(t, d.i1, uid); u != int64(n) {
			t.Errorf("unread of %d (shard %d) = %d, want %d stored", uid, uid%models.ShardCount, u, n)
		}
	}
}
