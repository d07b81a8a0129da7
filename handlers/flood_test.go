package handlers

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/go-sql-driver/mysql"
	"github.com/pushdesk/pushdesk/app"
)

// mysqlCounter is a TCP proxy in front of MariaDB that counts the
// statements passing through it (COM_QUERY, COM_STMT_EXECUTE), so a test
// can say what a flood cost MySQL without a server-wide counter that other
// tests on the same MariaDB move too.
type mysqlCounter struct {
	ln      net.Listener
	target  string
	queries atomic.Int64
}

func newMySQLCounter(tb testing.TB, target string) *mysqlCounter {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &mysqlCounter{ln: ln, target: target}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

// dsn returns dsn with its address replaced by the proxy's.
func (p *mysqlCounter) dsn(tb testing.TB, dsn string) string {
	tb.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Net, cfg.Addr = "tcp", p.ln.Addr().String()
	return cfg.FormatDSN()
}

func (p *mysqlCounter) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() { _, _ = io.Copy(client, server); client.Close() }()
	// Client packets: 3-byte length, sequence number, payload. A command
	// starts a new sequence (0); its first payload byte names it.
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(append(hdr[:3:3], 0)))
		body := make([]byte, n)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		if hdr[3] == 0 && n > 0 && (body[0] == 0x03 || body[0] == 0x17) {
			p.queries.Add(1)
		}
		if _, err := server.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}

// floodResult is what one client flooding a connection cost.
type floodResult struct {
	sent, framesOut, errors429 int
	queries                    int64
	closeCode                  int // 0 when the connection stayed open
}

// flood sends n copies of frame on ws as fast as it can while counting
// what comes back, until the connection closes or is quiet for a second.
func flood(t *testing.T, ws *wsClient, q *mysqlCounter, frame string, n int) floodResult {
	t.Helper()
	var r floodResult
	q.queries.Store(0)
	var wg sync.WaitGroup
	var sent atomic.Int64
	wg.Go(func() {
		for range n {
			if ws.conn.WriteMessage(websocket.TextMessage, []byte(frame)) != nil {
				return
			}
			sent.Add(1)
		}
	})
	for {
		_ = ws.conn.SetReadDeadline(time.Now().Add(time.Second))
		_, data, err := ws.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				r.closeCode = ce.Code
			} else if !isTimeout(err) {
				r.closeCode = -1 // the connection ended without a close frame
			}
			break
		}
		r.framesOut++
		if strings.Contains(string(data), `"code":429`) {
			r.errors429++
		}
	}
	ws.conn.Close() // unblocks the writer if the server stopped reading
	wg.Wait()
	r.sent = int(sent.Load())
	r.queries = q.queries.Load()
	return r
}

// 5,000 sync frames from one client once made 410,200 frames out and
// 8,227 MySQL queries: every sync ran in full, one after the other. Now
// syncs that arrive while one runs make it run once more at most, the
// frame budget refuses what is over it (429), and a client that keeps on
// is closed with 1008.
func TestSyncFloodCostsLittle(t *testing.T) {
	t.Parallel()
	dsn := srv.App.Cfg.MySQLDSN
	cfg, _ := mysql.ParseDSN(dsn)
	q := newMySQLCounter(t, cfg.Addr)
	s := startServer(t, func(c *app.Config) { c.MySQLDSN = q.dsn(t, dsn) })
	uid := newUID()
	for i := range 80 {
		send(t, uid, "comment", strings.Repeat("x", i))
	}
	waitRows(t, uid, 80)
	dial := func() *wsClient {
		ws := dialWSGroups(t, "ws://"+s.Addr(), uid)
		if got := len(ws.drain("msg", 200*time.Millisecond)); got != 80 {
			t.Fatalf("replay = %d msgs, want 80", got)
		}
		return ws
	}
	const perSync = 81 // an unread frame and the 80 messages

	t.Run("syncs within the budget are coalesced", func(t *testing.T) {
		r := flood(t, dial(), q, `{"type":"sync"}`, 250)
		t.Logf("250 sync frames: %d frames out, %d MySQL queries, close %d", r.framesOut, r.queries, r.closeCode)
		if r.closeCode != 0 || r.errors429 != 0 {
			t.Fatalf("close %d, %d errors 429; want the connection open and no refusal", r.closeCode, r.errors429)
		}
		if r.framesOut < perSync || r.framesOut > 3*perSync {
			t.Errorf("frames out = %d, want one to three syncs' worth (%d each)", r.framesOut, perSync)
		}
		if r.queries > 12 {
			t.Errorf("MySQL queries = %d, want a few", r.queries)
		}
	})
	t.Run("a flood is refused and closed", func(t *testing.T) {
		r := flood(t, dial(), q, `{"type":"sync"}`, 5000)
		t.Logf("5,000 sync frames: %d written before the close, %d frames out (%d errors 429), %d MySQL queries, close %d",
			r.sent, r.framesOut, r.errors429, r.queries, r.closeCode)
		if r.closeCode != websocket.ClosePolicyViolation {
			t.Errorf("close code = %d, want %d", r.closeCode, websocket.ClosePolicyViolation)
		}
		if r.errors429 == 0 {
			t.Error("no error 429 before the close")
		}
		if r.framesOut > 3*perSync+5 {
			t.Errorf("frames out = %d, want at most three syncs' worth", r.framesOut)
		}
		if r.queries > 12 {
			t.Errorf("MySQL queries = %d, want a few", r.queries)
		}
	})
}
