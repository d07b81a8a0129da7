package handlers

import (
	"net/http"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

// A read-all while a pushed message's commit is held past the read's wait
// (a slow MySQL, or a worker that died and whose task runs again later):
// the read-all goes on after its wait, and when the message commits it is
// stored read, so the user's unread 0 stays 0.
func TestReadAllHoldsForAMessageCommittedAfterIt(t *testing.T) {
	h := newCommitHold(t)
	ws := dialWS(t, h.uid)
	ws.until("hello")
	id, release := h.pushHeld(ws, "committed late", 0)
	if u := ws.until("unread"); u.num("total") != 1 {
		t.Fatalf("unread = %v, want total 1", u)
	}
	start := time.Now()
	if code, body := do(t, http.MethodPost, "/api/v1/me/read", mint(t, h.uid), `{"all":true}`); code != 200 {
		t.Fatalf("read-all = %d %v", code, body)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("read-all took %v: it did not wait for the held commit, the test shows nothing", waited)
	}
	release() // the commit goes through after the read-all
	waitRows(t, h.uid, 1)
	var read bool
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := testDB.QueryRow("SELECT is_read FROM "+models.ShardTable(h.uid)+" WHERE id = ?", mustParseID(t, id)).Scan(&read); err == nil && read {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s committed after the read-all is unread", id)
		}
	}
	if total, _ := unreadOf(t, h.uid); total != 0 {
		t.Fatalf("unread after the late commit = %d, want 0", total)
	}
	t.Logf("accepted 1, stored 1 (read), unread 0 after the late commit")
}
