package handlers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/pushdesk/pushdesk/app/input"
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
	n, err := srv.App.Delivery.PurgeExpired(context.Background())
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

func TestLargestBodiesToManyRecipientsAreStored(t *testing.T) {
	// 600 recipients × a 16 KiB body of backslashes: ~20 MB of escaped SQL,
	// which must be split across statements to stay under max_allowed_packet.
	body := `{"x":"` + strings.Repeat(`\\`, input.MaxBodyBytes/2-8) + `"}`
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
