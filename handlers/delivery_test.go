package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/models"
)

// countRows returns how many rows uid has in its shard.
func countRows(tb testing.TB, uid uint64) int {
	tb.Helper()
	var n int
	if err := testDB.QueryRow("SELECT COUNT(*) FROM "+models.ShardTable(uid)+" WHERE to_uid = ?", uid).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// drain waits d, then returns the frames of type typ that arrived. It
// reads up to a pong it asks for, so no read times out (a timed-out
// WebSocket read breaks the connection for good).
func (c *wsClient) drain(typ string, d time.Duration) []frame {
	c.tb.Helper()
	time.Sleep(d)
	c.send(`{"type":"ping"}`)
	var out []frame
	for {
		f := c.next()
		switch f.str("type") {
		case "pong":
			return out
		case typ:
			out = append(out, f)
		}
	}
}

func TestIdempotentIngestRacing(t *testing.T) {
	t.Parallel()
	uid := newUID()
	ws := dialWS(t, uid)
	ws.until("hello")
	body := fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"t":1},"idempotency_key":"race-%d"}`, uid, uid)
	const n = 8
	type answer struct {
		code int
		body map[string]any
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, b := post(t, "/internal/v1/messages", testIngestKey, body)
			answers[i] = answer{code, b}
		}()
	}
	close(start)
	wg.Wait()
	firsts := 0
	var ids string
	for i, a := range answers {
		switch {
		case a.code == 202 && a.body["duplicate"] == false:
			firsts++
		case a.code == 200 && a.body["duplicate"] == true:
		default:
			t.Fatalf("answer %d = %d %v, want 202 once and 200 duplicate otherwise", i, a.code, a.body)
		}
		got := fmt.Sprint(a.body["ids"])
		if ids == "" {
			ids = got
		} else if got != ids {
			t.Fatalf("answer %d ids = %s, want %s like the others", i, got, ids)
		}
	}
	if firsts != 1 {
		t.Fatalf("%d first answers, want 1", firsts)
	}
	msgs := ws.drain("msg", 1500*time.Millisecond)
	if len(msgs) != 1 {
		t.Fatalf("client got %d messages, want 1: %v", len(msgs), msgs)
	}
	waitRows(t, uid, 1)
	// A later repeat still answers the first call's ids.
	code, b := post(t, "/internal/v1/messages", testIngestKey, body)
	if code != 200 || b["duplicate"] != true || fmt.Sprint(b["ids"]) != ids {
		t.Fatalf("repeat = %d %v, want 200 duplicate with %s", code, b, ids)
	}
	if got := countRows(t, uid); got != 1 {
		t.Fatalf("rows = %d, want 1", got)
	}
}

func TestCollapseCountsUpAndResetsAfterRead(t *testing.T) {
	uid := newUID()
	ws := dialWS(t, uid)
	ws.until("hello")
	collapse := func(kind, key string) {
		t.Helper()
		code, b := post(t, "/internal/v1/messages", testIngestKey,
			fmt.Sprintf(`{"to_uid":%d,"kind":%q,"body":{"k":%q},"collapse_key":%q}`, uid, kind, key, key))
		if code != 202 {
			t.Fatalf("ingest = %d %v", code, b)
		}
	}
	collapse("comment", "post:1")
	first := ws.until("msg")
	if first.num("count") != 1 {
		t.Fatalf("first = %v, want count 1", first)
	}
	if u := ws.until("unread"); u.num("total") != 1 {
		t.Fatalf("unread = %v, want 1", u)
	}
	collapse("comment", "post:1")
	second := ws.until("msg")
	if second.str("id") != first.str("id") || second.num("count") != 2 {
		t.Fatalf("second = %v, want id %s count 2", second, first.str("id"))
	}
	if u := ws.until("unread"); u.num("total") != 1 {
		t.Fatalf("unread after collapse = %v, want still 1", u)
	}
	collapse("mail", "post:1") // another kind: a new message
	other := ws.until("msg")
	if other.str("id") == first.str("id") {
		t.Fatalf("other kind collapsed into %s", first.str("id"))
	}
	if u := ws.until("unread"); u.num("total") != 2 {
		t.Fatalf("unread = %v, want 2", u)
	}
	ws.send(fmt.Sprintf(`{"type":"read","ids":[%q]}`, first.str("id")))
	if u := ws.until("unread"); u.num("total") != 1 {
		t.Fatalf("unread after read = %v, want 1", u)
	}
	collapse("comment", "post:1") // the open one was read: a new message
	third := ws.until("msg")
	if third.str("id") == first.str("id") || third.num("count") != 1 {
		t.Fatalf("after read = %v, want a new id with count 1", third)
	}
	if u := ws.until("unread"); u.num("total") != 2 {
		t.Fatalf("unread = %v, want 2", u)
	}
	var count int
	if err := testDB.QueryRow("SELECT count FROM "+models.ShardTable(uid)+" WHERE id = ?", first.str("id")).Scan(&count); err != nil || count != 2 {
		t.Fatalf("stored count = %d (%v), want 2", count, err)
	}
	if got := countRows(t, uid); got != 3 {
		t.Fatalf("rows = %d, want 3 (collapsed, other kind, new after read)", got)
	}
}

func TestRoutingByActivity(t *testing.T) {
	a := srv.App
	defer a.Clock.Reset()
	ingested := func(q string) float64 { return testutil.ToFloat64(a.Metrics.Ingested.WithLabelValues(q)) }
	released := func() float64 { return testutil.ToFloat64(a.Metrics.Released) }

	t.Run("never seen goes fast", func(t *testing.T) {
		uid := newUID()
		before := ingested("fast")
		send(t, uid, "comment", "x")
		if got := ingested("fast") - before; got != 1 {
			t.Fatalf("fast ingested +%v, want +1", got)
		}
		waitRows(t, uid, 1)
	})

	seenNow := func(t *testing.T) uint64 {
		uid := newUID()
		ws := dialWS(t, uid)
		ws.until("hello")
		return uid
	}
	t.Run("seen within a day goes fast", func(t *testing.T) {
		uid := seenNow(t)
		a.Clock.Advance(23 * time.Hour)
		defer a.Clock.Reset()
		before := ingested("fast")
		send(t, uid, "comment", "x")
		if got := ingested("fast") - before; got != 1 {
			t.Fatalf("fast ingested +%v, want +1", got)
		}
	})
	t.Run("seen 16 days ago is released", func(t *testing.T) {
		uid := seenNow(t)
		a.Clock.Advance(16 * 24 * time.Hour)
		defer a.Clock.Reset()
		before, beforeFast, beforeDelayed := released(), ingested("fast"), ingested("delayed")
		code, b := post(t, "/internal/v1/messages", testIngestKey, fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{}}`, uid))
		if code != 202 || b["accepted"].(float64) != 0 || b["released"].(float64) != 1 {
			t.Fatalf("ingest = %d %v, want accepted 0 released 1", code, b)
		}
		if released()-before != 1 || ingested("fast") != beforeFast || ingested("delayed") != beforeDelayed {
			t.Fatal("released message was counted as queued, or not counted as released")
		}
	})
	t.Run("last seen falls back to MySQL", func(t *testing.T) {
		uid := newUID()
		if _, err := testDB.Exec("INSERT INTO user_last_seen (uid, last_seen) VALUES (?, ?)", uid, time.Now().Add(-3*24*time.Hour).UTC()); err != nil {
			t.Fatal(err)
		}
		before := ingested("delayed")
		send(t, uid, "comment", "x")
		if got := ingested("delayed") - before; got != 1 {
			t.Fatalf("delayed ingested +%v, want +1 (last seen 3 days ago, from MySQL)", got)
		}
	})
}

// A user seen 2 days ago is routed to the delayed queue, whose batches
// are stored a while later: asynq flushes a group 5 to 10 s after its last
// task (jobs: GroupGracePeriod, checked as often). The routing runs on the
// shared server's clock, moved forward, so it happens before t.Parallel
// (while no other test runs); the wait for the row runs beside the others.
func TestSeenTwoDaysAgoGoesDelayed(t *testing.T) {
	a := srv.App
	ingested := func() float64 { return testutil.ToFloat64(a.Metrics.Ingested.WithLabelValues("delayed")) }
	uid := newUID()
	ws := dialWS(t, uid)
	ws.until("hello")
	before := ingested()
	a.Clock.Advance(48 * time.Hour)
	code, b := func() (int, map[string]any) {
		defer a.Clock.Reset() // also when post fails the test
		return post(t, "/internal/v1/messages", testIngestKey, fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{}}`, uid))
	}()
	got := ingested() - before
	ws.conn.Close()
	if code != 202 || b["accepted"].(float64) != 1 {
		t.Fatalf("ingest = %d %v", code, b)
	}
	if got != 1 {
		t.Fatalf("delayed ingested +%v, want +1", got)
	}
	t.Parallel()
	deadline := time.Now().Add(20 * time.Second)
	for countRows(t, uid) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("delayed message not stored in 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRetentionDeletesOnlyOld(t *testing.T) {
	uid := newUID()
	old := time.Now().Add(-20 * 24 * time.Hour).UTC()
	table := models.ShardTable(uid)
	for i, read := range []int{0, 1, 1} {
		id := uint64(1000+i) + uid*10000
		if _, err := testDB.Exec("INSERT INTO "+table+" (id, to_uid, kind, body, count, is_read, sort_key, created_at, updated_at) VALUES (?, ?, 'comment', '{}', 1, ?, ?, ?, ?)",
			id, uid, read, id, old, old); err != nil {
			t.Fatal(err)
		}
	}
	fresh := send(t, uid, "comment", "fresh")
	waitRows(t, uid, 4)
	if total, _ := unreadOf(t, uid); total != 2 {
		t.Fatalf("unread before purge = %d, want 2", total)
	}
	n, err := srv.App.PurgeExpired(context.Background())
	if err != nil || n < 3 {
		t.Fatalf("PurgeExpired = %d, %v; want at least 3", n, err)
	}
	var left []string
	rows, err := testDB.Query("SELECT id FROM "+table+" WHERE to_uid = ?", uid)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		left = append(left, id)
	}
	rows.Close()
	if len(left) != 1 || left[0] != fresh {
		t.Fatalf("rows left = %v, want only %s", left, fresh)
	}
	if total, _ := unreadOf(t, uid); total != 1 {
		t.Fatalf("unread after purge = %d, want 1", total)
	}
}

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
	bc := broadcast(t, `{"segment":"`+seg+`","kind":"system","body":{"during":"the gap"}}`)
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

// userCenterStub is a real HTTP server playing the user center.
type userCenterStub struct {
	*httptest.Server
	calls atomic.Int64
}

func newUserCenter(t *testing.T) *userCenterStub {
	u := &userCenterStub{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		var uid int
		if _, err := fmt.Sscanf(r.Header.Get("Authorization"), "Bearer good-%d", &uid); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"uid":%d,"role":"user","groups":["authors"]}`, uid)
	}))
	t.Cleanup(u.Close)
	return u
}

func TestUserCenterAuth(t *testing.T) {
	uc := newUserCenter(t)
	s := startServer(t, func(c *app.Config) {
		c.AuthURL = uc.URL
		c.AuthTTLBase, c.AuthTTLJitter, c.AuthNegativeTTL = 100*time.Second, 50*time.Second, 30*time.Second
	})
	a := s.App
	ctx := context.Background()
	tok := fmt.Sprintf("good-%d-%d", newUID(), time.Now().UnixNano())

	t.Run("miss then hit", func(t *testing.T) {
		before := uc.calls.Load()
		id, err := a.Authenticate(ctx, tok)
		if err != nil || id.UID == 0 || len(id.Groups) != 1 {
			t.Fatalf("Authenticate = %+v, %v", id, err)
		}
		if _, err := a.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if got := uc.calls.Load() - before; got != 1 {
			t.Fatalf("user center called %d times, want 1 (then cached)", got)
		}
	})
	t.Run("jitter spread inside its bounds", func(t *testing.T) {
		ttls := map[int64]bool{}
		for i := range 40 {
			tk := fmt.Sprintf("good-%d-j%d-%d", 5+i, i, time.Now().UnixNano())
			if _, err := a.Authenticate(ctx, tk); err != nil {
				t.Fatal(err)
			}
			ms, err := a.Redis.Do(ctx, a.Redis.B().Pttl().Key(tokenKey(tk)).Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			if ms < (100+1)*1000-2000 || ms > (100+50)*1000 {
				t.Fatalf("TTL %d ms outside [101 s, 150 s]", ms)
			}
			ttls[ms/1000] = true
		}
		if len(ttls) < 10 {
			t.Fatalf("only %d distinct TTLs over 40 tokens, want them spread", len(ttls))
		}
		for range 1000 {
			if d := app.AuthTTL(3650*time.Second, 3000*time.Second); d < 3651*time.Second || d > 6650*time.Second {
				t.Fatalf("AuthTTL = %v, want 3651 s to 6650 s", d)
			}
		}
	})
	t.Run("rejected token is cached briefly", func(t *testing.T) {
		before := uc.calls.Load()
		for range 3 {
			if _, err := a.Authenticate(ctx, "bad-token"); err != app.ErrUnauthorized {
				t.Fatalf("Authenticate(bad) = %v, want unauthorized", err)
			}
		}
		if got := uc.calls.Load() - before; got > 1 {
			t.Fatalf("user center called %d times for a rejected token, want 1", got)
		}
	})
	t.Run("JWT works beside it", func(t *testing.T) {
		if id, err := a.Authenticate(ctx, mint(t, 99)); err != nil || id.UID != 99 {
			t.Fatalf("JWT = %+v, %v", id, err)
		}
	})
	t.Run("user center down", func(t *testing.T) {
		uc.Close()
		if _, err := a.Authenticate(ctx, tok); err != nil {
			t.Fatalf("cached token while down = %v, want accepted", err)
		}
		_, err := a.Authenticate(ctx, "good-777-unknown")
		if e, ok := app.AsError(err); !ok || e.Status != 503 {
			t.Fatalf("unknown token while down = %v, want 503", err)
		}
		// Over the wire: 503 before the upgrade, cached tokens connect.
		_, res, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token=good-778-unknown", nil)
		if err == nil || res == nil || res.StatusCode != 503 {
			t.Fatalf("ws with unknown token while down = %v %v, want 503", res, err)
		}
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token="+tok, nil)
		if err != nil {
			t.Fatalf("ws with cached token while down: %v", err)
		}
		conn.Close()
	})
}

func TestLargestBodiesToManyRecipientsAreStored(t *testing.T) {
	// 600 recipients × a 16 KiB body of backslashes: ~20 MB of escaped SQL,
	// which must be split across statements to stay under max_allowed_packet.
	body := `{"x":"` + strings.Repeat(`\\`, app.MaxBodyBytes/2-8) + `"}`
	uids := make([]string, 600)
	first := newUID()
	for i := range uids {
		uids[i] = fmt.Sprint(first + uint64(i))
	}
	for range len(uids) - 1 {
		newUID()
	}
	code, b := post(t, "/internal/v1/messages", testIngestKey, `{"to_uids":[`+strings.Join(uids, ",")+`],"kind":"big","body":`+body+`}`)
	if code != 202 || b["accepted"].(float64) != 600 {
		t.Fatalf("ingest = %d %v", code, b)
	}
	ids := b["ids"].([]any)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		last := first + 599
		if err := testDB.QueryRow("SELECT COUNT(*) FROM "+models.ShardTable(last)+" WHERE id = ?", ids[599]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the last recipient's row was not stored in 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var stored string
	if err := testDB.QueryRow("SELECT body FROM "+models.ShardTable(first)+" WHERE id = ?", ids[0]).Scan(&stored); err != nil || len(stored) != len(body) {
		t.Fatalf("stored body is %d bytes (%v), want %d", len(stored), err, len(body))
	}
}

// A batch whose INSERT fails partway (here its second shard table is
// missing) must store none of its rows, and the pool must stay usable: the
// transaction goes in one round trip, and the connection it left open is
// dropped.
func TestFailedShardBatchStoresNothing(t *testing.T) {
	ctx := context.Background()
	a := srv.App
	good := newUID()
	bad := good + 1 // the next shard
	now := time.Now().UTC()
	rows := []models.Message{
		{ID: a.IDs.Next(), ToUID: good, Kind: "ok", Body: `{}`, Count: 1, CreatedAt: now, UpdatedAt: now},
		{ID: a.IDs.Next(), ToUID: bad, Kind: "ok", Body: `{}`, Count: 1, CreatedAt: now, UpdatedAt: now},
	}
	for i := range rows {
		rows[i].SortKey = rows[i].ID
	}
	table := models.ShardTable(bad)
	if _, err := testDB.ExecContext(ctx, "RENAME TABLE "+table+" TO "+table+"_away"); err != nil {
		t.Fatal(err)
	}
	err := a.Repo.InsertMessages(ctx, rows)
	if _, rerr := testDB.ExecContext(ctx, "RENAME TABLE "+table+"_away TO "+table); rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil {
		t.Fatal("a batch with a missing shard table was stored")
	}
	var n int
	for _, uid := range []uint64{good, bad} {
		if err := testDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+models.ShardTable(uid)+" WHERE to_uid = ?", uid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("user %d has %d rows from the failed batch, want 0", uid, n)
		}
	}
	// The pool still works, many times over (a connection left inside the
	// failed transaction would keep its rows uncommitted or fail).
	for i := range 40 {
		m := rows[0]
		m.ID = a.IDs.Next()
		m.SortKey = m.ID
		if err := a.Repo.InsertMessages(ctx, []models.Message{m}); err != nil {
			t.Fatalf("insert %d after the failure: %v", i, err)
		}
	}
	if err := testDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+models.ShardTable(good)+" WHERE to_uid = ?", good).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 40 {
		t.Fatalf("user %d has %d rows, want 40", good, n)
	}
}

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
	id, ok := app.ParseID(s)
	if !ok {
		tb.Fatalf("bad id %q", s)
	}
	return id
}

// TestInsertMessagesKeepsEveryField writes rows whose strings need quoting
// (quotes, backslashes, escapes, newlines, multi-byte text) through the
// rendered multi-shard INSERT, and reads every column back. A repeat of the
// same ids is skipped, and a batch too big for one exec still lands whole.
func TestInsertMessagesKeepsEveryField(t *testing.T) {
	ctx := context.Background()
	a := srv.App
	at := time.Date(2026, 11, 22, 13, 4, 5, 678_900_000, time.UTC)
	bodies := []string{`{"q":"it's \"quoted\""}`, `{"path":"C:\\dir\\n"}`, "{\"nul\":\"a\\u0000b\",\"nl\":\"x\ny\"}", `{"text":"已读 🎉 ü"}`, `{"pct":"100% ? ; --"}`}
	var rows []models.Message
	for i, body := range bodies {
		uid := newUID()
		id := a.IDs.Next()
		rows = append(rows, models.Message{ID: id, ToUID: uid, Kind: "k.i-n_d" + strconv.Itoa(i), Body: body,
			CollapseKey: `ck'\` + strconv.Itoa(i), Count: uint32(i + 1), IsSent: i%2 == 0, IsRead: i%3 == 0,
			SortKey: id + 7, CreatedAt: at, UpdatedAt: at.Add(time.Duration(i) * time.Second)})
	}
	if err := a.Repo.InsertMessages(ctx, rows); err != nil {
		t.Fatal(err)
	}
	check := func(want models.Message) {
		t.Helper()
		var got models.Message
		var created, updated string
		err := testDB.QueryRowContext(ctx, "SELECT to_uid, kind, body, collapse_key, count, is_sent, is_read, sort_key, "+
			"DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM "+
			models.ShardTable(want.ToUID)+" WHERE id = ?", want.ID).
			Scan(&got.ToUID, &got.Kind, &got.Body, &got.CollapseKey, &got.Count, &got.IsSent, &got.IsRead, &got.SortKey, &created, &updated)
		if err != nil {
			t.Fatalf("row %d: %v", want.ID, err)
		}
		const layout = "2006-01-02 15:04:05.000000"
		if got.ToUID != want.ToUID || got.Kind != want.Kind || got.Body != want.Body || got.CollapseKey != want.CollapseKey ||
			got.Count != want.Count || got.IsSent != want.IsSent || got.IsRead != want.IsRead || got.SortKey != want.SortKey ||
			created != want.CreatedAt.Truncate(time.Millisecond).Format(layout) || updated != want.UpdatedAt.Truncate(time.Millisecond).Format(layout) {
			t.Fatalf("row %d read back as %+v (created %s, updated %s), want %+v", want.ID, got, created, updated, want)
		}
	}
	for _, m := range rows {
		check(m)
	}
	// A retried batch (same ids, changed content) leaves the rows as they were.
	again := append([]models.Message(nil), rows...)
	for i := range again {
		again[i].Body = `{"retried":true}`
	}
	if err := a.Repo.InsertMessages(ctx, again); err != nil {
		t.Fatal(err)
	}
	for _, m := range rows {
		check(m)
	}
	// ~5 MiB of SQL: more than one exec, still one batch.
	big := strings.Repeat(`\'`, 8<<10)
	var large []models.Message
	for range 320 {
		uid := newUID()
		id := a.IDs.Next()
		large = append(large, models.Message{ID: id, ToUID: uid, Kind: "big", Body: `{"b":"` + big + `"}`, Count: 1, SortKey: id, CreatedAt: at, UpdatedAt: at})
	}
	if err := a.Repo.InsertMessages(ctx, large); err != nil {
		t.Fatal(err)
	}
	for _, m := range []models.Message{large[0], large[159], large[319]} {
		check(m)
	}
	var n int
	for _, m := range large {
		var c int
		if err := testDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+models.ShardTable(m.ToUID)+" WHERE id = ?", m.ID).Scan(&c); err != nil {
			t.Fatal(err)
		}
		n += c
	}
	if n != len(large) {
		t.Fatalf("%d of %d large rows stored", n, len(large))
	}
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
	for i := range app.ResumeLimit + 1 {
		id := l + uint64(i+1)<<20
		rows[id] = false
		ids = append(ids, strconv.FormatUint(id, 10))
	}
	storeRows(t, uid, rows)
	sse := dialSSE(t, uid, last)
	sse.until("hello")
	if got, want := sse.msgIDs(500*time.Millisecond), ids[len(ids)-app.ReplayLimit:]; !slices.Equal(got, want) {
		t.Fatalf("resumed %d messages (%v … %v), want the newest %d unread", len(got), first(got), lastOf(got), app.ReplayLimit)
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
