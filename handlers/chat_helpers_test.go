package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/chat"
)

// desk is a server of a chat test's own: the package's Redis and MariaDB
// database, but its own chat key prefix, so that no other test's
// agents or conversations take part in its assignments.
type desk struct {
	tb   testing.TB
	srv  *Server
	base string
	ws   string
}

type deskOpt func(*app.Config)

func newDesk(tb testing.TB, opts ...deskOpt) *desk {
	tb.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	cfg := app.Config{
		Addr: "127.0.0.1:0", RedisURL: testRedisURL, MySQLDSN: testDSN,
		JWTSecret: testSecret, IngestKey: testIngestKey, RunWorkers: true,
		Heartbeat: 2 * time.Second, AgentHeartbeat: time.Second, QueuePoll: srv.App.Cfg.QueuePoll,
		Chat: chat.Config{KeyPrefix: "pd:{chat" + hex.EncodeToString(b[:]) + "}:", Settle: 300 * time.Millisecond,
			Tick: 100 * time.Millisecond, Grace: 30 * time.Second},
	}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := newProcess(cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	d := &desk{tb: tb, srv: s, base: "http://" + s.Addr(), ws: "ws://" + s.Addr()}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		// The next desk rebuilds its (empty) Redis state from the shared
		// test schema: leave nothing live in it.
		if _, err := testDB.Exec("UPDATE chat_conversations SET status = 'closed' WHERE status <> 'closed'"); err != nil {
			tb.Error(err)
		}
	})
	return d
}

func agentToken(tb testing.TB, id uint64, name string) string {
	tb.Helper()
	tok, err := auth.NewTokens(testSecret).Mint(auth.Identity{UID: id, Role: auth.RoleAgent, Name: name}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// dialTok opens a WebSocket with token and reads its hello.
func (d *desk) dialTok(tok string) *wsClient {
	d.tb.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(d.ws+"/ws?token="+tok, nil)
	if err != nil {
		d.tb.Fatalf("dial: %v", err)
	}
	d.tb.Cleanup(func() { conn.Close() })
	c := &wsClient{tb: d.tb, conn: conn}
	if f := c.next(); f.str("type") != "hello" {
		d.tb.Fatalf("first frame = %v, want hello", f)
	}
	return c
}

func (d *desk) user(uid uint64) *wsClient { return d.dialTok(mint(d.tb, uid)) }

func (d *desk) agent(id uint64, name string) *wsClient {
	c := d.dialTok(agentToken(d.tb, id, name))
	if f := c.until("agent.status"); f.str("status") == "" {
		d.tb.Fatalf("agent.status = %v", f)
	}
	return c
}

// chatSend sends a line and returns its chat.ack (failing on an error).
func (c *wsClient) chatSend(conv, text, cmid string) frame {
	c.tb.Helper()
	c.send(fmt.Sprintf(`{"type":"chat.send","conversation_id":%q,"text":%q,"client_msg_id":%q}`, conv, text, cmid))
	for {
		f := c.next()
		switch f.str("type") {
		case "chat.ack":
			return f
		case "error":
			c.tb.Fatalf("chat.send %q: error %v", text, f)
		}
	}
}

// expectError reads until an error frame and checks its code.
func (c *wsClient) expectError(code int64) frame {
	c.tb.Helper()
	f := c.until("error")
	if f.num("code") != code {
		c.tb.Fatalf("error frame = %v, want code %d", f, code)
	}
	return f
}

// agentOf returns the agent id in a chat.assigned frame.
func agentOf(f frame) string {
	a, _ := f["agent"].(map[string]any)
	s, _ := a["id"].(string)
	return s
}

func (d *desk) get(path, tok string) (int, map[string]any) {
	d.tb.Helper()
	return doAt(d.tb, d.base, http.MethodGet, path, tok, "")
}

func (d *desk) post(path, tok, body string) (int, map[string]any) {
	d.tb.Helper()
	return doAt(d.tb, d.base, http.MethodPost, path, tok, body)
}

// convRows counts uid's conversations in MySQL.
func convRows(tb testing.TB, uid uint64) int {
	tb.Helper()
	var n int
	if err := testDB.QueryRow("SELECT COUNT(*) FROM chat_conversations WHERE user_id = ?", uid).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}
