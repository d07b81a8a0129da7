package handlers

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/models"
)

// commitHold holds up the commits of messages to uid without locking
// anything of uid's: messages go to a blocker user too, whose shard sorts
// first and whose table is locked, so the batch's transaction waits on its
// first INSERT and uid's row is neither written nor locked meanwhile.
type commitHold struct {
	tb           testing.TB
	uid, blocker uint64
}

func newCommitHold(tb testing.TB) *commitHold {
	blocker := newUID()
	for {
		if uid := newUID(); uid%models.ShardCount > blocker%models.ShardCount {
			return &commitHold{tb: tb, uid: uid, blocker: blocker}
		}
	}
}

// hold locks the blocker's shard until the returned func is called.
func (h *commitHold) hold() (release func()) {
	h.tb.Helper()
	ctx := context.Background()
	conn, err := testDB.Conn(ctx)
	if err != nil {
		h.tb.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "LOCK TABLES "+models.ShardTable(h.blocker)+" READ"); err != nil {
		h.tb.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, _ = conn.ExecContext(ctx, "UNLOCK TABLES")
			conn.Close()
		})
	}
	h.tb.Cleanup(release)
	return release
}

// pushHeld holds the commit, sends text and waits until ws has it, while
// uid's shard still holds only stored rows. It returns the message's id
// and the release.
func (h *commitHold) pushHeld(ws *wsClient, text string, stored int) (string, func()) {
	h.tb.Helper()
	release := h.hold()
	id := h.send(text)
	if m := ws.until("msg"); m.str("id") != id {
		h.tb.Fatalf("msg = %v, want id %s", m, id)
	}
	if n := countRows(h.tb, h.uid); n != stored {
		h.tb.Fatalf("%d rows stored while the commit was held, want %d", n, stored)
	}
	return id, release
}

// send posts one message to uid and the blocker and returns uid's id.
func (h *commitHold) send(text string) string {
	h.tb.Helper()
	code, body := post(h.tb, "/internal/v1/messages", testIngestKey,
		fmt.Sprintf(`{"to_uids":[%d,%d],"kind":"comment","body":{"text":%q}}`, h.blocker, h.uid, text))
	if code != 202 {
		h.tb.Fatalf("ingest = %d %v, want 202", code, body)
	}
	return body["ids"].([]any)[1].(string)
}

// A message is pushed before its shard commit. While the commit is held
// up, an ack and a read of the pushed id, and a second device's replay,
// must wait for it instead of missing the message.
func TestActingOnAMessageBeforeItsCommit(t *testing.T) {
	h := newCommitHold(t)
	uid := h.uid
	ws := dialWS(t, uid)
	ws.until("hello")
	unlock := h.hold()
	id := h.send("early")
	if m := ws.until("msg"); m.str("id") != id {
		t.Fatalf("msg = %v, want id %s", m, id)
	}
	if u := ws.until("unread"); u.num("total") != 1 || u.num("unacked") != 1 {
		t.Fatalf("unread = %v, want total 1 unacked 1", u)
	}
	if n := countRows(t, uid); n != 0 {
		t.Fatalf("%d rows stored while the shard was locked: the test did not hold the commit", n)
	}
	ws.send(fmt.Sprintf(`{"type":"ack","ids":[%q]}`, id))
	listed := make(chan string, 1) // the REST listing, asked before the commit
	go func() {
		first := "(request failed)"
		defer func() { listed <- first }() // also when do gives up on the test
		_, body := do(t, http.MethodGet, "/api/v1/me/messages?unread=true", mint(t, uid), "")
		first = ""
		if msgs, _ := body["messages"].([]any); len(msgs) > 0 {
			first, _ = msgs[0].(map[string]any)["id"].(string)
		}
	}()
	phone := dialWS(t, uid) // a second device connects before the commit
	if h := phone.until("hello"); h["unread"].(map[string]any)["total"].(float64) != 1 {
		t.Fatalf("second device's hello = %v, want total 1", h)
	}
	time.Sleep(100 * time.Millisecond)
	select { // the listing must still be waiting for the commit
	case first := <-listed:
		t.Fatalf("GET messages answered %q while the commit was held", first)
	default:
	}
	time.AfterFunc(200*time.Millisecond, unlock)
	if m := phone.until("msg"); m.str("id") != id || m["replay"] != true {
		t.Fatalf("second device's first msg = %v, want the replay of %s", m, id)
	}
	if u := ws.until("unread"); u.num("total") != 1 || u.num("unacked") != 0 {
		t.Fatalf("after the early ack = %v, want total 1 unacked 0", u)
	}
	if first := <-listed; first != id {
		t.Fatalf("GET messages asked before the commit listed %q first, want %s", first, id)
	}
	waitRows(t, uid, 1)
	ws.send(fmt.Sprintf(`{"type":"read","ids":[%q]}`, id))
	if u := ws.until("unread"); u.num("total") != 0 {
		t.Fatalf("after read = %v, want total 0", u)
	}

	// Read-all sent while a pushed message is still uncommitted covers it.
	id2, unlock := h.pushHeld(ws, "late", 1)
	ws.send(`{"type":"read","all":true}`)
	time.AfterFunc(300*time.Millisecond, unlock)
	for {
		u := ws.until("unread")
		if u.num("total") == 0 {
			break
		}
	}
	if total, _ := unreadOf(t, uid); total != 0 {
		t.Fatalf("REST unread after read-all = %d, want 0", total)
	}
	var read bool
	if err := testDB.QueryRow("SELECT is_read FROM "+models.ShardTable(uid)+" WHERE id = ?", mustParseID(t, id2)).Scan(&read); err != nil || !read {
		t.Fatalf("the late message's row: read=%v err=%v, want read", read, err)
	}

	// So does a read of the pushed id.
	id3, unlock := h.pushHeld(ws, "later", 2)
	ws.send(fmt.Sprintf(`{"type":"read","ids":[%q]}`, id3))
	time.AfterFunc(300*time.Millisecond, unlock)
	for {
		if u := ws.until("unread"); u.num("total") == 0 {
			break
		}
	}
	if total, _ := unreadOf(t, uid); total != 0 {
		t.Fatalf("REST unread after reading the pushed id = %d, want 0", total)
	}
}

func mustParseID(tb testing.TB, s string) uint64 {
	tb.Helper()
	id, ok := ids.Parse(s)
	if !ok {
		tb.Fatalf("bad id %q", s)
	}
	return id
}
