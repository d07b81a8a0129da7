package handlers

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
)

// The end-to-end tests run one real server on 127.0.0.1:0 against a
// redis-server of the package's own and a MariaDB database of its own (on
// the server PUSHDESK_MYSQL_DSN names), and talk to it as clients would.
//
// Tests that mostly wait on timers, and touch only what is theirs (their
// users, segments, servers), call t.Parallel: they run side by side once
// the serial ones are done. Serial stay the tests that move the shared
// server's clock, lock or rename a shard table, broadcast to segment
// "all", or run chat desks (desks share the conversations table), and the
// ones whose timing margins are thin.

const (
	testSecret    = "e2e-secret"
	testIngestKey = "e2e-ingest"
)

var (
	srv     *Server
	baseURL string
	wsURL   string
	testDB  *sql.DB
	nextUID atomic.Uint64
	// The package's stores, which every server of the tests shares
	// unless it takes one of its own.
	testRedisURL, testDSN string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx := context.Background()
	redisURL, stopRedis, err := testsvc.PackageRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e redis:", err)
		return 1
	}
	defer stopRedis()
	dsn, drop, err := testsvc.OwnDatabase("pushdesk_e2e_handlers")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e mysql:", err)
		return 1
	}
	defer drop()
	if err := migrate(ctx, dsn); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	if testDB, err = sql.Open("mysql", dsn); err != nil {
		fmt.Fprintln(os.Stderr, "e2e mysql:", err)
		return 1
	}
	defer testDB.Close()
	testRedisURL, testDSN = redisURL, dsn
	cfg := app.Config{
		Addr: "127.0.0.1:0", RedisURL: redisURL, MySQLDSN: dsn,
		JWTSecret: testSecret, IngestKey: testIngestKey, RunWorkers: true,
		Heartbeat: 2 * time.Second, AgentHeartbeat: time.Second,
		// The worker loop that polls both queues cannot stop while it
		// sleeps between polls (asynq sleeps poll/2 plus up to a poll):
		// with the default 2 s, every server with workers took up to 3 s
		// to shut down. Only that loop's housekeeping and the delayed
		// queue's batches wait on the poll; fast work comes with a wake.
		QueuePoll: 100 * time.Millisecond,
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if srv, err = newProcess(cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "e2e server:", err)
		return 1
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e start:", err)
		return 1
	}
	baseURL = "http://" + srv.Addr()
	wsURL = "ws://" + srv.Addr()
	nextUID.Store(uint64(time.Now().UnixNano()%1_000_000) * 1000)
	code := m.Run()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return code
}

// migrate creates the tables in the (new, empty) database dsn names.
func migrate(ctx context.Context, dsn string) error {
	db, err := models.Open(ctx, dsn, 4)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = migrations.Run(ctx, db)
	return err
}

// newUID returns a user id no other test uses.
func newUID() uint64 { return nextUID.Add(1) }

func mint(tb testing.TB, uid uint64, groups ...string) string {
	tb.Helper()
	tok, err := auth.NewTokens(testSecret).Mint(auth.Identity{UID: uid, Groups: groups}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// post sends a JSON request and returns the status and decoded body.
func post(tb testing.TB, path, bearer, body string) (int, map[string]any) {
	tb.Helper()
	return do(tb, http.MethodPost, path, bearer, body)
}

func do(tb testing.TB, method, path, bearer, body string) (int, map[string]any) {
	tb.Helper()
	return doAt(tb, baseURL, method, path, bearer, body)
}

// doAt is do against the server at base.
func doAt(tb testing.TB, base, method, path, bearer, body string) (int, map[string]any) {
	tb.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		tb.Fatalf("%s %s: body is not JSON: %s", method, path, raw)
	}
	return res.StatusCode, out
}

func (f frame) str(k string) string { s, _ := f[k].(string); return s }
func (f frame) num(k string) int64  { n, _ := f[k].(float64); return int64(n) }

func unreadOf(tb testing.TB, uid uint64) (total, unacked int64) {
	tb.Helper()
	code, body := do(tb, http.MethodGet, "/api/v1/me/unread", mint(tb, uid), "")
	if code != 200 {
		tb.Fatalf("unread = %d %v", code, body)
	}
	return int64(body["total"].(float64)), int64(body["unacked"].(float64))
}

func TestWSAndSSEReceivePostedMessage(t *testing.T) {
	uid := newUID()
	ws := dialWS(t, uid)
	hello := ws.next()
	if hello.str("type") != "hello" || hello.str("uid") != fmt.Sprint(uid) || hello.str("conn_id") == "" || hello.num("heartbeat_s") != 2 {
		t.Fatalf("first frame = %v, want hello for %d", hello, uid)
	}
	sse := dialSSE(t, uid, "")
	sse.until("hello")

	id := send(t, uid, "comment", "hi there")
	m := ws.until("msg")
	if m.str("id") != id || m.str("kind") != "comment" || m["replay"] != false || m.num("count") != 1 || m.num("ts") == 0 {
		t.Fatalf("ws msg = %v, want id %s live", m, id)
	}
	if body := m["body"].(map[string]any); body["text"] != "hi there" {
		t.Fatalf("ws body = %v", body)
	}
	if u := ws.until("unread"); u.num("total") != 1 {
		t.Fatalf("unread after msg = %v, want total 1", u)
	}
	ev := sse.until("msg")
	if ev.id != id || ev.data.str("id") != id {
		t.Fatalf("sse msg = %+v, want id %s", ev, id)
	}
}

func TestOfflineUserGetsReplay(t *testing.T) {
	uid := newUID()
	ids := []string{send(t, uid, "comment", "one"), send(t, uid, "system", "two")}
	waitRows(t, uid, 2)
	ws := dialWS(t, uid)
	hello := ws.next()
	u := hello["unread"].(map[string]any)
	if u["total"].(float64) != 2 {
		t.Fatalf("hello unread = %v, want total 2", u)
	}
	for i, want := range ids { // oldest first
		m := ws.next()
		if m.str("type") != "msg" || m.str("id") != want || m["replay"] != true {
			t.Fatalf("replay %d = %v, want msg %s replay:true", i, m, want)
		}
	}
	// Live after replay.
	id := send(t, uid, "comment", "three")
	if m := ws.until("msg"); m.str("id") != id || m["replay"] != false {
		t.Fatalf("live = %v, want %s", m, id)
	}
}

// waitRows waits until uid has n rows in its shard.
func waitRows(tb testing.TB, uid uint64, n int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got int
		if err := testDB.QueryRow("SELECT COUNT(*) FROM "+models.ShardTable(uid)+" WHERE to_uid = ?", uid).Scan(&got); err != nil {
			tb.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("uid %d has %d rows, want %d", uid, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAckAndReadOverWebSocket(t *testing.T) {
	uid := newUID()
	ws := dialWS(t, uid)
	ws.until("hello")
	a := send(t, uid, "comment", "a")
	ws.until("msg")
	ws.until("unread")
	b := send(t, uid, "comment", "b")
	ws.until("msg")
	if u := ws.until("unread"); u.num("total") != 2 || u.num("unacked") != 2 {
		t.Fatalf("unread = %v, want total 2 unacked 2", u)
	}
	ws.send(fmt.Sprintf(`{"type":"ack","ids":[%q]}`, a))
	if u := ws.until("unread"); u.num("total") != 2 || u.num("unacked") != 1 {
		t.Fatalf("after ack = %v, want total 2 unacked 1", u)
	}
	ws.send(fmt.Sprintf(`{"type":"read","ids":[%q]}`, b))
	if u := ws.until("unread"); u.num("total") != 1 || u.num("unacked") != 0 {
		t.Fatalf("after read = %v, want total 1 unacked 0", u)
	}
	ws.send(`{"type":"read","all":true}`)
	if u := ws.until("unread"); u.num("total") != 0 {
		t.Fatalf("after read all = %v, want total 0", u)
	}
	ws.send(`{"type":"ping"}`)
	ws.until("pong")
	if total, _ := unreadOf(t, uid); total != 0 {
		t.Fatalf("REST unread = %d, want 0", total)
	}
}

func TestAckAndReadOverREST(t *testing.T) {
	uid := newUID()
	tok := mint(t, uid)
	ids := []string{send(t, uid, "comment", "1"), send(t, uid, "comment", "2"), send(t, uid, "mail", "3")}
	waitRows(t, uid, 3)
	if total, unacked := unreadOf(t, uid); total != 3 || unacked != 3 {
		t.Fatalf("unread = %d/%d, want 3/3", total, unacked)
	}
	code, body := post(t, "/api/v1/me/ack", tok, fmt.Sprintf(`{"ids":[%q,%q]}`, ids[0], ids[1]))
	if code != 200 || body["acked"].(float64) != 2 {
		t.Fatalf("ack = %d %v, want 2", code, body)
	}
	if total, unacked := unreadOf(t, uid); total != 3 || unacked != 1 {
		t.Fatalf("after ack unread = %d/%d, want 3/1", total, unacked)
	}
	code, body = post(t, "/api/v1/me/read", tok, fmt.Sprintf(`{"ids":[%q]}`, ids[2]))
	if code != 200 || body["updated"].(float64) != 1 {
		t.Fatalf("read = %d %v, want 1", code, body)
	}
	// Reading it again changes nothing.
	if _, body = post(t, "/api/v1/me/read", tok, fmt.Sprintf(`{"ids":[%q]}`, ids[2])); body["updated"].(float64) != 0 {
		t.Fatalf("second read = %v, want 0", body)
	}
	code, body = do(t, http.MethodGet, "/api/v1/me/unread", tok, "")
	if code != 200 || body["total"].(float64) != 2 || body["by_kind"].(map[string]any)["comment"].(float64) != 2 {
		t.Fatalf("unread = %v, want 2 comments", body)
	}
	code, body = post(t, "/api/v1/me/read", tok, `{"all":true}`)
	if code != 200 || body["updated"].(float64) != 2 {
		t.Fatalf("read all = %d %v, want 2", code, body)
	}
	if total, unacked := unreadOf(t, uid); total != 0 || unacked != 0 {
		t.Fatalf("after read all = %d/%d, want 0/0", total, unacked)
	}
	// The unread filter and the read flag agree.
	_, body = do(t, http.MethodGet, "/api/v1/me/messages?unread=true", tok, "")
	if n := len(body["messages"].([]any)); n != 0 {
		t.Fatalf("unread messages = %d, want 0", n)
	}
}

func TestMessagesPagination(t *testing.T) {
	uid := newUID()
	tok := mint(t, uid)
	var ids []string
	for i := range 5 {
		ids = append(ids, send(t, uid, "comment", fmt.Sprint(i)))
	}
	waitRows(t, uid, 5)
	var got []string
	before := ""
	for page := 0; page < 5; page++ {
		path := "/api/v1/me/messages?limit=2"
		if before != "" {
			path += "&before=" + before
		}
		code, body := do(t, http.MethodGet, path, tok, "")
		if code != 200 {
			t.Fatalf("page %d = %d %v", page, code, body)
		}
		for _, m := range body["messages"].([]any) {
			got = append(got, m.(map[string]any)["id"].(string))
		}
		if body["next"] == nil {
			break
		}
		before = body["next"].(string)
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages = %v, want newest first %v", got, want)
	}
	for _, q := range []string{"limit=0", "limit=x", "limit=500", "unread=maybe", "before=abc"} {
		if code, body := do(t, http.MethodGet, "/api/v1/me/messages?"+q, tok, ""); code != 400 || body["error"] == nil {
			t.Errorf("messages?%s = %d %v, want 400 with error body", q, code, body)
		}
	}
}

// An agent's connection has its own, shorter heartbeat (seed: 5 s, here
// 1 s against the users' 2 s): a silent agent is dropped after 2.5 s, a
// user silent as long is not.
func TestSilentAgentIsDroppedSooner(t *testing.T) {
	dial := func(role string) (*websocket.Conn, frame) {
		tok, err := auth.NewTokens(testSecret).Mint(auth.Identity{UID: newUID(), Role: auth.Role(role)}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		conn, _, err := websocket.DefaultDialer.Dial(wsURL+"/ws?token="+tok, nil)
		if err != nil {
			t.Fatalf("dial %s: %v", role, err)
		}
		t.Cleanup(func() { conn.Close() })
		// Pings are answered only while the client reads: it reads the
		// hello, then nothing.
		conn.SetPingHandler(func(string) error { return nil })
		var hello frame
		if err := conn.ReadJSON(&hello); err != nil || hello["type"] != "hello" {
			t.Fatalf("%s hello = %v, %v", role, hello, err)
		}
		return conn, hello
	}
	agent, agentHello := dial("agent")
	user, userHello := dial("user")
	if agentHello["heartbeat_s"] != float64(1) || userHello["heartbeat_s"] != float64(2) {
		t.Fatalf("heartbeat_s: agent %v, user %v; want 1 and 2", agentHello["heartbeat_s"], userHello["heartbeat_s"])
	}
	// The agent's deadline is 2.5 s after its hello, the user's 5 s: look
	// at 3.2 s, the user first (half a second of reading, which answers
	// nothing), so each side has more than half a second to spare.
	time.Sleep(3200 * time.Millisecond)
	readUntilErr := func(c *websocket.Conn, wait time.Duration) error {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return err
			}
		}
	}
	if err := readUntilErr(user, 500*time.Millisecond); !isTimeout(err) {
		t.Fatalf("silent user after 3.2 s: %v, want it still open", err)
	}
	if err := readUntilErr(agent, time.Second); err == nil || isTimeout(err) {
		t.Fatalf("silent agent after 3.7 s: %v, want the connection closed", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestServerPingsAndSyncReplays(t *testing.T) {
	t.Parallel()
	uid := newUID()
	ws := dialWS(t, uid)
	pinged := make(chan struct{}, 1)
	ws.conn.SetPingHandler(func(string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return ws.conn.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
	})
	ws.until("hello")
	id := send(t, uid, "comment", "x")
	ws.until("msg")
	waitRows(t, uid, 1) // the live push may overtake the commit; sync replays what is stored
	ws.send(`{"type":"sync"}`)
	ws.until("unread")
	if m := ws.until("msg"); m.str("id") != id || m["replay"] != true {
		t.Fatalf("sync replay = %v, want %s replay:true", m, id)
	}
	// Reading keeps the ping handler running; the heartbeat here is 2 s.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ws.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := ws.conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("no server ping within 5s")
	}
	ws.conn.Close()
	<-done
}

func TestRowsLandInShardUIDMod128(t *testing.T) {
	for _, uid := range []uint64{newUID(), newUID()*128 + 5, newUID()*128 + 127} {
		id := send(t, uid, "comment", "shard check")
		waitRows(t, uid, 1)
		shard := fmt.Sprintf("user_push_msg_%d", uid%128)
		var gotUID uint64
		var kind string
		if err := testDB.QueryRow("SELECT to_uid, kind FROM "+shard+" WHERE id = ?", id).Scan(&gotUID, &kind); err != nil {
			t.Fatalf("row %s not in %s: %v", id, shard, err)
		}
		if gotUID != uid || kind != "comment" {
			t.Fatalf("%s row = %d %s, want %d comment", shard, gotUID, kind, uid)
		}
		var elsewhere int
		other := fmt.Sprintf("user_push_msg_%d", (uid+1)%128)
		_ = testDB.QueryRow("SELECT COUNT(*) FROM "+other+" WHERE id = ?", id).Scan(&elsewhere)
		if elsewhere != 0 {
			t.Fatalf("row %s also in %s", id, other)
		}
	}
}

func TestHealthAndErrors(t *testing.T) {
	if code, _ := do(t, http.MethodGet, "/healthz", "", ""); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	if code, _ := do(t, http.MethodGet, "/readyz", "", ""); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	code, body := do(t, http.MethodGet, "/nope", "", "")
	if code != 404 || body["error"].(map[string]any)["code"] != "not_found" {
		t.Fatalf("unknown path = %d %v, want 404 not_found", code, body)
	}
	if code, body := post(t, "/api/v1/me/read", mint(t, newUID()), `{"ids":[]}`); code != 400 || body["error"] == nil {
		t.Fatalf("read with no ids = %d %v, want 400", code, body)
	}
	if code, _ := post(t, "/api/v1/me/read", mint(t, newUID()), `nope`); code != 400 {
		t.Fatalf("read with bad JSON = %d, want 400", code)
	}
	_ = bytes.MinRead
}
