package clustertest

import (
	"database/sql"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
)

// tally counts the msg frames each id arrived in, across a user's clients.
type tally struct {
	mu     sync.Mutex
	frames map[string]int
}

func (t *tally) add(id string) {
	t.mu.Lock()
	t.frames[id]++
	t.mu.Unlock()
}

func (t *tally) get(id string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.frames[id]
}

// MariaDB stopped for 15 s under steady ingest, clients connected all the
// while: nothing accepted is lost (every message is stored once the
// server is back, and reaches its client), and the retries that ran into
// the outage push again at most once per message.
func TestMariaDBDownFifteenSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15 s outage and the retries after it")
	}
	rds := startRedis(t)
	my := testsvc.StartMariaDB(t)
	dsn := my.Database("pushdesk_outage")
	in := startInstance(t, "o1", rds.url(), dsn)

	const users = 40
	uids := make([]uint64, users)
	seen := make([]*tally, users)
	for i := range uids {
		uids[i] = newUID()
		seen[i] = &tally{frames: map[string]int{}}
		c := dial(t, in, uids[i])
		go func() {
			for f := range c.frames {
				if f["type"] == "msg" {
					seen[i].add(f["id"].(string))
				}
			}
		}()
	}

	// Ingest at ~40 messages/s for 25 s: 5 s before the outage, 15 s of
	// it, 5 s after.
	var (
		mu       sync.Mutex
		accepted = make([][]string, users)
		during   atomic.Int64
		refused  atomic.Int64
		down     atomic.Bool
	)
	stop := make(chan struct{})
	var posting sync.WaitGroup
	posting.Add(1)
	go func() {
		defer posting.Done()
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			i := n % users
			code, body := in.request(t, http.MethodPost, "/internal/v1/messages", ingestKey,
				fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"n":%d}}`, uids[i], n))
			if code != 202 {
				refused.Add(1)
				continue
			}
			mu.Lock()
			accepted[i] = append(accepted[i], body["ids"].([]any)[0].(string))
			mu.Unlock()
			if down.Load() {
				during.Add(1)
			}
		}
	}()
	time.Sleep(5 * time.Second)
	down.Store(true)
	my.Stop()
	t.Log("MariaDB stopped")
	time.Sleep(15 * time.Second)
	my.Start()
	down.Store(false)
	t.Log("MariaDB started again")
	time.Sleep(5 * time.Second)
	close(stop)
	posting.Wait()

	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	total := 0
	for _, ids := range accepted {
		total += len(ids)
	}
	storedCount := func() int {
		n := 0
		for _, uid := range uids {
			var c int
			if err := db.QueryRow("SELECT COUNT(*) FROM "+models.ShardTable(uid)+" WHERE to_uid = ?", uid).Scan(&c); err != nil {
				return -1
			}
			n += c
		}
		return n
	}
	// The last retries of messages accepted early in the outage run about
	// 31 s after it began (1+2+4+8+16 s of backoff).
	stored := 0
	eventually(t, 120*time.Second, "every accepted message stored", func() bool {
		stored = storedCount()
		return stored >= total
	})
	time.Sleep(2 * time.Second) // the last pushes in flight
	delivered, lost, twice, extra := 0, 0, 0, 0
	for i, ids := range accepted {
		for _, id := range ids {
			switch n := seen[i].get(id); {
			case n == 0:
				lost++
			case n > 1:
				twice++
				extra += n - 1
				fallthrough
			default:
				delivered++
			}
		}
	}
	t.Logf("accepted %d (%d while MariaDB was down, %d refused), stored %d, delivered %d, lost %d, "+
		"pushed more than once %d (%d duplicate frames)", total, during.Load(), refused.Load(), stored, delivered, lost, twice, extra)
	if stored != total || lost > 0 {
		t.Fatalf("stored %d and delivered %d of %d accepted", stored, delivered, total)
	}
	if extra > twice || twice > int(during.Load())+users {
		t.Fatalf("%d duplicate frames for %d messages: more than one repeat per message", extra, twice)
	}
}
