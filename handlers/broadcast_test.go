package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
)

func dialWSGroups(t *testing.T, base string, uid uint64, groups ...string) *wsClient {
	t.Helper()
	tok, err := auth.NewTokens(testSecret).Mint(auth.Identity{UID: uid, Groups: groups}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := websocket.DefaultDialer.Dial(base+"/ws?token="+tok, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{tb: t, conn: conn}
	c.until("hello")
	return c
}

// broadcast posts a broadcast and returns its id.
func postBroadcastOK(t *testing.T, body string) string {
	t.Helper()
	code, b := post(t, "/internal/v1/broadcasts", testIngestKey, body)
	if code != 202 || b["duplicate"] != false {
		t.Fatalf("broadcast = %d %v, want 202", code, b)
	}
	return b["id"].(string)
}

func uniqueSegment(prefix string) string { return fmt.Sprintf("%s%d", prefix, newUID()) }

func TestBroadcastTargetsMembersOnlineAndOffline(t *testing.T) {
	t.Parallel()
	seg := uniqueSegment("authors")
	jwtMember, apiMember, outsider, offlineMember := newUID(), newUID(), newUID(), newUID()
	if code, b := do(t, http.MethodPut, fmt.Sprintf("/internal/v1/users/%d/segments", apiMember), testIngestKey, `{"segments":["`+seg+`"]}`); code != 204 {
		t.Fatalf("PUT segments = %d %v", code, b)
	}
	do(t, http.MethodPut, fmt.Sprintf("/internal/v1/users/%d/segments", offlineMember), testIngestKey, `{"segments":["`+seg+`","x"]}`)
	// The offline member was seen before the broadcast.
	c := dialWSGroups(t, wsURL, offlineMember)
	c.conn.Close()
	waitOffline(t, offlineMember)

	a := dialWSGroups(t, wsURL, jwtMember, seg)
	b := dialWSGroups(t, wsURL, apiMember)
	o := dialWSGroups(t, wsURL, outsider, "other")
	id := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"text":"for authors"}}`)
	for name, cl := range map[string]*wsClient{"jwt member": a, "api member": b} {
		m := cl.until("msg")
		if m.str("id") != id || m["broadcast"] != true || m["replay"] != false {
			t.Fatalf("%s got %v, want broadcast %s", name, m, id)
		}
	}
	if got := o.drain("msg", 700*time.Millisecond); len(got) != 0 {
		t.Fatalf("non-member got %v", got)
	}
	// The offline member counts it as unread, and gets it in the replay.
	if total, _ := unreadOf(t, offlineMember); total != 1 {
		t.Fatalf("offline member unread = %d, want 1", total)
	}
	if total, _ := unreadOf(t, outsider); total != 0 {
		t.Fatalf("outsider unread = %d, want 0", total)
	}
	back := dialWSGroups(t, wsURL, offlineMember)
	m := back.until("msg")
	if m.str("id") != id || m["replay"] != true || m["broadcast"] != true {
		t.Fatalf("replay = %v, want broadcast %s replay:true", m, id)
	}
	_, page := do(t, http.MethodGet, "/api/v1/me/messages?unread=true", mint(t, offlineMember), "")
	if msgs := page["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["id"] != id {
		t.Fatalf("unread messages = %v, want the broadcast", page)
	}
	// Reading it one by one takes it off the count.
	if _, r := post(t, "/api/v1/me/read", mint(t, offlineMember), `{"ids":["`+id+`"]}`); r["updated"].(float64) != 1 {
		t.Fatalf("read broadcast = %v, want updated 1", r)
	}
	if total, _ := unreadOf(t, offlineMember); total != 0 {
		t.Fatalf("unread after reading the broadcast = %d, want 0", total)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"segments":"x"}`, "invalid_json"}, {`{}`, "invalid_input"}, {`{"segments":["Bad Name"]}`, "invalid_input"}, {`{"segments":["all"]}`, "invalid_input"},
	} {
		if code, b := do(t, http.MethodPut, "/internal/v1/users/1/segments", testIngestKey, tc.body); code != 400 || b["error"].(map[string]any)["code"] != tc.want {
			t.Errorf("PUT segments %s = %d %v, want 400 %s", tc.body, code, b, tc.want)
		}
	}
}

func waitOffline(t *testing.T, uid uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, b := do(t, http.MethodGet, fmt.Sprintf("/internal/v1/users/%d/presence", uid), testIngestKey, "")
		if b["online"] == false {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %d still online", uid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBroadcastUnreadArithmeticWithLastSeen(t *testing.T) {
	seg := uniqueSegment("seg")
	uid := newUID()
	before := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"n":"before first visit"}}`)
	waitSent(t, before)
	c := dialWSGroups(t, wsURL, uid, seg) // first visit: earlier broadcasts are not news
	c.conn.Close()
	waitOffline(t, uid)
	if total, _ := unreadOf(t, uid); total != 0 {
		t.Fatalf("unread after first visit = %d, want 0", total)
	}
	one := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"n":1}}`)
	postBroadcastOK(t, `{"segment":"all","kind":"notice","body":{"n":"`+seg+`"}}`)
	send(t, uid, "comment", "own")
	waitSent(t, one)
	waitRows(t, uid, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, b := do(t, http.MethodGet, "/api/v1/me/unread", mint(t, uid, seg), "")
		bk := b["by_kind"].(map[string]any)
		// "all" broadcasts from other tests may land too: count ours.
		if code == 200 && bk["system"] == 1.0 && bk["comment"] == 1.0 && bk["notice"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unread = %v, want system 1, comment 1 and the notice", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Read-all covers broadcasts too.
	post(t, "/api/v1/me/read", mint(t, uid), `{"all":true}`)
	if total, _ := unreadOf(t, uid); total != 0 {
		t.Fatalf("unread after read all = %d, want 0", total)
	}
	// A new session: what arrived while away counts, what came before does not.
	c = dialWSGroups(t, wsURL, uid, seg)
	c.conn.Close()
	waitOffline(t, uid)
	later := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"n":2}}`)
	waitSent(t, later)
	// The row says "sent" a moment before the fan-out invalidates cached
	// counts, so poll; the count must reach 1 and never pass it.
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, b := do(t, http.MethodGet, "/api/v1/me/unread", mint(t, uid, seg), "")
		n, _ := b["by_kind"].(map[string]any)["system"].(float64)
		if n > 1 {
			t.Fatalf("unread after another visit = %v, want only the later broadcast", b)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unread after another visit = %v, want the later broadcast", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitSent(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var status string
		_ = testDB.QueryRow("SELECT status FROM broadcasts WHERE id = ?", id).Scan(&status)
		if status == models.BroadcastSent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broadcast %s is %q after 10 s, want sent", id, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBroadcastDuplicates(t *testing.T) {
	seg := uniqueSegment("dup")
	body := `{"segment":"` + seg + `","kind":"system","body":{"x":1}}`
	first := postBroadcastOK(t, body)
	code, b := post(t, "/internal/v1/broadcasts", testIngestKey, body)
	if code != 200 || b["duplicate"] != true || b["id"] != first {
		t.Fatalf("same body again = %d %v, want 200 duplicate %s", code, b, first)
	}
	// A different body is a new broadcast; the same key with any body is not.
	other := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"x":2},"idempotency_key":"k-`+seg+`"}`)
	if other == first {
		t.Fatal("different body answered as duplicate")
	}
	code, b = post(t, "/internal/v1/broadcasts", testIngestKey, `{"segment":"`+seg+`","kind":"system","body":{"x":3},"idempotency_key":"k-`+seg+`"}`)
	if code != 200 || b["id"] != other {
		t.Fatalf("same key = %d %v, want 200 with %s", code, b, other)
	}
	// Racing submits: one broadcast.
	raceBody := `{"segment":"` + seg + `","kind":"system","body":{"race":true}}`
	var wg sync.WaitGroup
	ids := make([]string, 8)
	fresh := make([]bool, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, b := post(t, "/internal/v1/broadcasts", testIngestKey, raceBody)
			ids[i], fresh[i] = fmt.Sprint(b["id"]), code == 202
		}()
	}
	wg.Wait()
	n := 0
	for i := range ids {
		if ids[i] != ids[0] {
			t.Fatalf("racing submits got ids %v, want one", ids)
		}
		if fresh[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d racing submits were accepted as new, want 1", n)
	}
	var rows int
	_ = testDB.QueryRow("SELECT COUNT(*) FROM broadcasts WHERE segment = ?", seg).Scan(&rows)
	if rows != 3 {
		t.Fatalf("%d broadcast rows for the segment, want 3", rows)
	}
	for _, bad := range []string{`{"segment":"all"}`, `{"segment":"Bad!","kind":"k","body":{}}`, `{"segment":"all","kind":"k","body":[]}`,
		`{"segment":"all","kind":"k","body":{},"send_at":"tomorrow"}`, `{"segment":"all","kind":"k","body":{},"cron":"every day"}`,
		`{"segment":"all","kind":"k","body":{},"cron":"* * * * *","send_at":"2030-01-01T00:00:00Z"}`,
		`{"segment":"all","kind":"k","body":{},"cron":"@every 1s"}`} {
		if code, b := post(t, "/internal/v1/broadcasts", testIngestKey, bad); code != 400 || b["error"] == nil {
			t.Errorf("POST %s = %d %v, want 400", bad, code, b)
		}
	}
}

// A scheduled broadcast arrives at its time, not before; a cancelled one
// never comes. asynq schedules to the second (a task due at 12:00:01.5
// may run at 12:00:01.0), so the time is a whole second. The cancelled
// one is due first: asynq's forwarder moves every due task at each pass
// (every 5 s), and the workers take them in that order, so had it not
// been cancelled it would come before the other or just after it.
func TestScheduledBroadcastArrives(t *testing.T) {
	t.Parallel()
	seg := uniqueSegment("sched")
	c := dialWSGroups(t, wsURL, newUID(), seg)
	due := time.Now().Truncate(time.Second).Add(2 * time.Second)
	sendAt := func(at time.Time) string { return at.UTC().Format(time.RFC3339Nano) }
	gone := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"n":2},"send_at":"`+sendAt(due.Add(-500*time.Millisecond))+`"}`)
	if code, _ := do(t, http.MethodDelete, "/internal/v1/broadcasts/"+gone, testIngestKey, ""); code != 204 {
		t.Fatalf("DELETE = %d, want 204", code)
	}
	if code, _ := do(t, http.MethodDelete, "/internal/v1/broadcasts/"+gone, testIngestKey, ""); code != 404 {
		t.Fatalf("second DELETE = %d, want 404", code)
	}
	id := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{},"send_at":"`+sendAt(due)+`"}`)
	_, list := do(t, http.MethodGet, "/internal/v1/broadcasts", testIngestKey, "")
	if !strings.Contains(fmt.Sprint(list), id) {
		t.Fatalf("pending list %v lacks %s", list, id)
	}
	c.wait = 9 * time.Second
	m := c.until("msg")
	if early := time.Until(due); early > 0 {
		t.Fatalf("scheduled broadcast arrived %v early: %v", early, m)
	}
	if m.str("id") != id {
		t.Fatalf("got %v, want %s", m, id)
	}
	if got := c.drain("msg", 500*time.Millisecond); len(got) != 0 {
		t.Fatalf("cancelled broadcast arrived: %v", got)
	}
}

// The scheduler runs a recurring broadcast at the next minute: up to 60
// s after it was posted, once it has the broadcast (at its Start, then
// every jobs.SyncEvery). So the test posts it before t.Parallel, and the
// wait runs while the serial tests do. It is posted through the shared
// server and then read by a server of the test's own, which has it from
// its Start; that server is on a Redis of its own, so no other broadcast
// reaches its client, and its heartbeat is long enough that the client,
// unread while the test is paused, is not dropped as silent.
func TestCronBroadcastRegisteredAndCancelled(t *testing.T) {
	seg := uniqueSegment("cron")
	id := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"every":"minute"},"cron":"* * * * *"}`)
	s := startServer(t, func(c *app.Config) {
		c.RedisURL, c.RunWorkers, c.Heartbeat = testsvc.Redis(t), true, time.Hour
	})
	base := "http://" + s.Addr()
	c := dialWSGroups(t, "ws://"+s.Addr(), newUID(), seg)
	_, list := doAt(t, base, http.MethodGet, "/internal/v1/broadcasts", testIngestKey, "")
	if !strings.Contains(fmt.Sprint(list), id) || !strings.Contains(fmt.Sprint(list), "recurring") {
		t.Fatalf("pending list %v lacks recurring %s", list, id)
	}
	t.Parallel()

	c.wait = 80 * time.Second
	m := c.until("msg")
	if m["broadcast"] != true || m.str("id") == id {
		t.Fatalf("occurrence = %v, want a new broadcast id from template %s", m, id)
	}
	var parent string
	if err := testDB.QueryRow("SELECT parent_id FROM broadcasts WHERE id = ?", m.str("id")).Scan(&parent); err != nil || parent != id {
		t.Fatalf("occurrence parent = %s (%v), want %s", parent, err, id)
	}
	if code, _ := doAt(t, base, http.MethodDelete, "/internal/v1/broadcasts/"+id, testIngestKey, ""); code != 204 {
		t.Fatalf("cancel = %d", code)
	}
	_, list = doAt(t, base, http.MethodGet, "/internal/v1/broadcasts", testIngestKey, "")
	if strings.Contains(fmt.Sprint(list), id) {
		t.Fatalf("cancelled %s still listed: %v", id, list)
	}
	// A cancelled template makes no more occurrences.
	if n, err := s.App.Broadcasts.NewOccurrence(context.Background(), mustID(t, id), ""); err != nil || n != 0 {
		t.Fatalf("NewOccurrence after cancel = %d, %v; want none", n, err)
	}
}

func mustID(t *testing.T, s string) uint64 {
	id, ok := ids.Parse(s)
	if !ok {
		t.Fatalf("bad id %q", s)
	}
	return id
}

// The fan-out's checkpoint, its lock and its order are tested in package
// broadcast (fanout_test.go), with instances side by side in one process.

func TestBroadcastRepeatRecoversALostFirstCall(t *testing.T) {
	// The first call claimed the dedupe key and stored the row, then died
	// before enqueueing the fan-out. A retry must not just answer
	// "duplicate": the broadcast must still go out.
	seg := uniqueSegment("lost")
	c := dialWSGroups(t, wsURL, newUID(), seg)
	body := `{"segment":"` + seg + `","kind":"system","body":{"lost":1},"idempotency_key":"lost-` + seg + `"}`
	a := srv.App
	id := a.IDs.Next()
	if err := a.Repo.InsertBroadcast(context.Background(), &models.Broadcast{ID: id, Segment: seg, Kind: "system", Body: `{"lost":1}`,
		Status: models.BroadcastScheduled, CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := a.Redis.Do(context.Background(), a.Redis.B().Set().Key("pd:bdup:k:lost-"+seg).Value(ids.Format(id)).Ex(time.Minute).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	code, b := post(t, "/internal/v1/broadcasts", testIngestKey, body)
	if code != 200 || b["id"] != ids.Format(id) {
		t.Fatalf("retry = %d %v, want 200 duplicate with %d", code, b, id)
	}
	if m := c.until("msg"); m.str("id") != ids.Format(id) {
		t.Fatalf("got %v, want the recovered broadcast %d", m, id)
	}
}

// The contract sends an unread frame after anything changes the counts; a
// live broadcast changes every member's. Each member's connection gets its
// own counts right behind the broadcast, the same as GET /unread answers.
func TestLiveBroadcastIsFollowedByCounts(t *testing.T) {
	seg := uniqueSegment("counts")
	member, outsider := newUID(), newUID()
	m := dialWSGroups(t, wsURL, member, seg)
	o := dialWSGroups(t, wsURL, outsider)
	send(t, member, "comment", "personal")
	m.until("msg")
	if u := m.until("unread"); u.num("total") != 1 {
		t.Fatalf("unread after a message = %v, want total 1", u)
	}
	for i, want := range []int64{1, 2} {
		id := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"n":`+fmt.Sprint(i)+`}}`)
		if f := m.until("msg"); f.str("id") != id {
			t.Fatalf("member got %v, want broadcast %s", f, id)
		}
		u := m.next()
		bk, _ := u["by_kind"].(map[string]any)
		if u.str("type") != "unread" || u.num("total") != 1+want || bk["system"] != float64(want) || bk["comment"] != 1.0 {
			t.Fatalf("frame after broadcast %d = %v, want unread total %d (comment 1, system %d)", i, u, 1+want, want)
		}
		if total, _ := unreadOf(t, member); total != 1+want {
			t.Fatalf("GET unread after broadcast %d = %d, want %d", i, total, 1+want)
		}
	}
	if got := o.drain("unread", 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("non-member got counts %v", got)
	}
}

// Members told different counts each get their own new counts, and
// members told the same counts get the same (the fan-out shares frames
// between them): counts differing only by kind, or only by unacked, must
// not be mixed up.
func TestBroadcastCountsPerMember(t *testing.T) {
	seg := uniqueSegment("permember")
	type member struct {
		uid       uint64
		ws        *wsClient
		total     int64
		byKind    map[string]float64
		unacked   int64
		name, ack string
	}
	ms := []*member{
		{name: "comment", total: 1, byKind: map[string]float64{"comment": 1}, unacked: 1},
		{name: "mail", total: 1, byKind: map[string]float64{"mail": 1}, unacked: 1},
		{name: "comment acked", total: 1, byKind: map[string]float64{"comment": 1}, unacked: 0, ack: "comment"},
		{name: "quiet", byKind: map[string]float64{}},
		{name: "quiet too", byKind: map[string]float64{}},
	}
	for _, m := range ms {
		m.uid = newUID()
		m.ws = dialWSGroups(t, wsURL, m.uid, seg)
		if m.total > 0 {
			kind := "comment"
			if m.byKind["mail"] > 0 {
				kind = "mail"
			}
			id := send(t, m.uid, kind, "personal")
			m.ws.until("msg")
			m.ws.until("unread")
			if m.ack != "" {
				m.ws.send(fmt.Sprintf(`{"type":"ack","ids":[%q]}`, id))
				if u := m.ws.until("unread"); u.num("unacked") != 0 {
					t.Fatalf("%s: after ack %v", m.name, u)
				}
			}
		}
	}
	for i := range int64(2) {
		postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"per":`+fmt.Sprint(i)+`}}`)
		for _, m := range ms {
			m.ws.until("msg")
			u := m.ws.next()
			want := map[string]float64{"system": float64(i + 1)}
			for k, v := range m.byKind {
				want[k] = v
			}
			bk, _ := u["by_kind"].(map[string]any)
			ok := u.str("type") == "unread" && u.num("total") == m.total+i+1 && u.num("unacked") == m.unacked && len(bk) == len(want)
			for k, v := range want {
				ok = ok && bk[k] == v
			}
			if !ok {
				t.Fatalf("%s after broadcast %d: %v, want total %d, by_kind %v, unacked %d", m.name, i, u, m.total+i+1, want, m.unacked)
			}
			if total, _ := unreadOf(t, m.uid); total != m.total+i+1 {
				t.Fatalf("%s: GET unread after broadcast %d = %d, want %d", m.name, i, total, m.total+i+1)
			}
		}
	}
}

// Joining a segment that has unread broadcasts changes the counts, so a
// connected user is told at once; leaving it takes them off again.
func TestSegmentChangeSendsUnread(t *testing.T) {
	seg := uniqueSegment("join")
	uid := newUID()
	c := dialWSGroups(t, wsURL, uid)
	id := postBroadcastOK(t, `{"segment":"`+seg+`","kind":"system","body":{"text":"before joining"}}`)
	if got := c.drain("msg", 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("non-member got %v", got)
	}
	if code, b := do(t, http.MethodPut, fmt.Sprintf("/internal/v1/users/%d/segments", uid), testIngestKey, `{"segments":["`+seg+`"]}`); code != 204 {
		t.Fatalf("PUT segments = %d %v", code, b)
	}
	u := c.until("unread")
	if u["total"] != float64(1) || u["by_kind"].(map[string]any)["system"] != float64(1) {
		t.Fatalf("unread after joining = %v, want the broadcast %s counted", u, id)
	}
	do(t, http.MethodPut, fmt.Sprintf("/internal/v1/users/%d/segments", uid), testIngestKey, `{"segments":[]}`)
	if u := c.until("unread"); u["total"] != float64(0) {
		t.Fatalf("unread after leaving = %v, want 0", u)
	}
}
