package handlers

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/session"
	"github.com/pushdesk/pushdesk/models"
)

func TestSSEResumeWithLastEventID(t *testing.T) {
	uid := newUID()
	sse := dialSSE(t, uid, "")
	sse.until("hello")
	first := send(t, uid, "comment", "1")
	if ev := sse.until("msg"); ev.id != first {
		t.Fatalf("msg id = %s, want %s", ev.id, first)
	}
	seg := uniqueSegment("resume")
	if code, _ := do(t, http.MethodPut, fmt.Sprintf("/internal/v1/users/%d/segments", uid), testIngestKey, `{"segments":["`+seg+`"]}`); code != 204 {
		t.Fatal("PUT segments")
	}
	sse.res.Body.Close() // the connection drops
	missed := []string{send(t, uid, "comment", "2"), send(t, uid, "comment", "3")}
	waitRows(t, uid, 3)
	bc := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"during":"the gap"}}`)
	waitSent(t, bc)
	missed = append(missed, bc)
	again := dialSSE(t, uid, first)
	again.until("hello")
	viaQuery := dialSSE(t, uid, "q:"+first) // what pushdesk.js sends when it reconnects itself
	viaQuery.until("hello")
	for _, want := range missed {
		if ev := viaQuery.until("msg"); ev.id != want || ev.data["replay"] != true {
			t.Fatalf("resumed (query) msg = %s %v, want %s replay:true", ev.id, ev.data, want)
		}
	}
	for _, want := range missed {
		ev := again.until("msg")
		if ev.id != want || ev.data["replay"] != true {
			t.Fatalf("resumed msg = %s %v, want %s replay:true", ev.id, ev.data, want)
		}
	}
	live := send(t, uid, "comment", "4")
	if ev := again.until("msg"); ev.id != live || ev.data["replay"] != false {
		t.Fatalf("live after resume = %s, want %s", ev.id, live)
	}
	req, _ := http.NewRequest(http.MethodGet, baseURL+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+mint(t, uid))
	req.Header.Set("Last-Event-ID", "not-an-id")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 400 {
		t.Fatalf("bad Last-Event-ID = %v %v, want 400", res, err)
	}
	res.Body.Close()
}

// storeRows writes rows for uid straight into its shard, as a worker
// would have, with the given ids and read states.
func storeRows(t *testing.T, uid uint64, read map[uint64]bool) {
	t.Helper()
	tx, err := testDB.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for id, r := range read {
		if _, err := tx.Exec("INSERT INTO "+models.ShardTable(uid)+
			" (id, to_uid, kind, body, count, is_sent, is_read, sort_key, created_at, updated_at) VALUES (?, ?, 'comment', '{}', 1, 1, ?, ?, NOW(3), NOW(3))",
			id, uid, r, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// msgIDs collects the ids of msg events until none comes for quiet.
func (c *sseClient) msgIDs(quiet time.Duration) []string {
	var ids []string
	for {
		select {
		case ev, ok := <-c.evts:
			if !ok {
				return ids
			}
			if ev.event == "msg" {
				ids = append(ids, ev.id)
			}
		case <-time.After(quiet):
			return ids
		}
	}
}

// A message can reach the stream after one with a later id (workers run
// side by side); if the stream drops between the two, the resume still
// replays it while it is unread. Older or read ones stay out.
func TestSSEResumeReplaysOvertakenUnread(t *testing.T) {
	t.Parallel()
	uid := newUID()
	sse := dialSSE(t, uid, "")
	sse.until("hello")
	last := send(t, uid, "comment", "seen")
	if ev := sse.until("msg"); ev.id != last {
		t.Fatalf("msg id = %s, want %s", ev.id, last)
	}
	sse.res.Body.Close()
	waitRows(t, uid, 1)
	l, _ := strconv.ParseUint(last, 10, 64)
	overtaken, readBefore, long := l-3<<20, l-5<<20, l-uint64(time.Minute/time.Millisecond)<<22
	readAfter := l + 3<<20
	storeRows(t, uid, map[uint64]bool{overtaken: false, readBefore: true, long: false, readAfter: true})

	again := dialSSE(t, uid, last)
	again.until("hello")
	got := again.msgIDs(500 * time.Millisecond)
	want := []string{strconv.FormatUint(overtaken, 10), strconv.FormatUint(readAfter, 10)}
	if !slices.Equal(got, want) {
		t.Fatalf("resumed = %v, want %v (the overtaken unread one, then the one after the last event)", got, want)
	}
}

// A gap longer than the resume cap replays as a fresh connect: the newest
// 100 unread.
func TestSSEResumeOfALongGapReplaysNewestUnread(t *testing.T) {
	t.Parallel()
	uid := newUID()
	last := send(t, uid, "comment", "seen")
	waitRows(t, uid, 1)
	l, _ := strconv.ParseUint(last, 10, 64)
	rows := make(map[uint64]bool)
	var ids []string
	for i := range session.ResumeLimit + 1 {
		id := l + uint64(i+1)<<20
		rows[id] = false
		ids = append(ids, strconv.FormatUint(id, 10))
	}
	storeRows(t, uid, rows)
	sse := dialSSE(t, uid, last)
	sse.until("hello")
	if got, want := sse.msgIDs(500*time.Millisecond), ids[len(ids)-session.ReplayLimit:]; !slices.Equal(got, want) {
		t.Fatalf("resumed %d messages (%v … %v), want the newest %d unread", len(got), first(got), lastOf(got), session.ReplayLimit)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func lastOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
