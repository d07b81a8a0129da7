package handlers

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// wsPair returns the server side of a real loopback WebSocket as a
// corkConn with small socket buffers, and the library's client on the
// other end.
func wsPair(t *testing.T) (*corkConn, *websocket.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   *websocket.Conn
		err error
	}
	got := make(chan res, 1)
	go func() {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			got <- res{nil, err}
			return
		}
		_ = nc.(*net.TCPConn).SetReadBuffer(4096)
		u, _ := url.Parse("ws://" + ln.Addr().String() + "/ws")
		c, _, err := websocket.NewClient(nc, u, nil, 1024, 1024)
		got <- res{c, err}
	}()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	_ = sc.(*net.TCPConn).SetWriteBuffer(4096)
	req, err := http.ReadRequest(bufio.NewReader(sc))
	if err != nil {
		t.Fatal(err)
	}
	h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	_, _ = sc.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"))
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	cc := &corkConn{Conn: sc}
	cc.raw, _ = sc.(syscall.Conn).SyscallConn()
	return cc, r.c
}

func TestRawFramesOfEverySizeClass(t *testing.T) {
	cc, client := wsPair(t)
	for _, n := range []int{0, 125, 126, 200, 65535, 65536, 70000} {
		data := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		go func() { _, _ = cc.Write(appendTextFrame(nil, data)) }()
		mt, got, err := client.ReadMessage()
		if err != nil || mt != websocket.TextMessage || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: type %d, %d bytes back, err %v", n, mt, len(got), err)
		}
	}
}

func TestTryWriteKeepsTheRestAndItGoesFirst(t *testing.T) {
	cc, client := wsPair(t)
	small := appendTextFrame(nil, []byte(`{"type":"msg","id":"1"}`))
	if ok, rest, err := cc.TryWrite(small); !ok || rest || err != nil {
		t.Fatalf("idle socket: ok %v rest %v err %v", ok, rest, err)
	}
	big := bytes.Repeat([]byte{'b'}, 256<<10) // far more than both buffers hold
	ok, rest, err := cc.TryWrite(appendTextFrame(nil, big))
	if !ok || !rest || err != nil {
		t.Fatalf("big frame on a small socket: ok %v rest %v err %v, want a partial write", ok, rest, err)
	}
	if ok, _, _ := cc.TryWrite(small); ok {
		t.Fatal("TryWrite went ahead of the backlog")
	}
	after := appendTextFrame(nil, []byte(`{"type":"msg","id":"2"}`))
	errc := make(chan error, 1)
	go func() { _, err := cc.Write(after); errc <- err }() // sends the backlog first
	for i, want := range [][]byte{[]byte(`{"type":"msg","id":"1"}`), big, []byte(`{"type":"msg","id":"2"}`)} {
		_, got, err := client.ReadMessage()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes, err %v; want %d bytes", i, len(got), err, len(want))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// A peer that stops reading fills the socket: TryWrite then stops
	// taking whole frames (nothing, or a part kept as backlog).
	for i := 0; ; i++ {
		ok, rest, err := cc.TryWrite(small)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || rest {
			break
		}
		if i == 1_000_000 {
			t.Fatal("a socket nobody reads took 1,000,000 frames without blocking")
		}
	}
}

// fasthttp/websocket sets a deadline on the connection only around its own
// writes; the server's frames must not inherit a lapsed one (a ping's).
func TestServerFramesOutliveTheLibrarysDeadline(t *testing.T) {
	cc, client := wsPair(t)
	_ = cc.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	time.Sleep(50 * time.Millisecond)
	one := []byte(`{"type":"msg","id":"1"}`)
	if err := cc.WriteFrames(appendTextFrame(nil, one)); err != nil {
		t.Fatalf("WriteFrames after a lapsed deadline: %v", err)
	}
	_ = cc.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	time.Sleep(50 * time.Millisecond)
	if ok, _, err := cc.TryWrite(appendTextFrame(nil, one)); !ok || err != nil {
		t.Fatalf("TryWrite after a lapsed deadline: ok %v, err %v", ok, err)
	}
	for i := range 2 {
		if _, got, err := client.ReadMessage(); err != nil || !bytes.Equal(got, one) {
			t.Fatalf("message %d: %q, %v", i, got, err)
		}
	}
}

// A write that fails with a frame half sent ends the connection: nothing
// may follow the truncated frame, or the peer would read it as payload.
func TestFailedWriteIsStickyAndEndsTheConnection(t *testing.T) {
	cc, client := wsPair(t)
	big := bytes.Repeat([]byte{'b'}, 256<<10)
	if ok, rest, _ := cc.TryWrite(appendTextFrame(nil, big)); !ok || !rest {
		t.Fatalf("want a partial write, got ok %v rest %v", ok, rest)
	}
	// A pong with the library's short deadline, while nobody reads: the
	// backlog cannot drain in time.
	_ = cc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := cc.Write([]byte{0x8a, 0}); err == nil {
		t.Fatal("the pong went out behind a backlog nobody read")
	}
	small := appendTextFrame(nil, []byte(`{"type":"msg","id":"2"}`))
	if _, _, err := cc.TryWrite(small); err == nil {
		t.Fatal("TryWrite after a failed write did not fail")
	}
	if err := cc.WriteFrames(small); err == nil {
		t.Fatal("WriteFrames after a failed write did not fail")
	}
	// The peer gets the truncated frame's start and then the end of the
	// connection, never a message made of the wrong bytes.
	if _, got, err := client.ReadMessage(); err == nil {
		t.Fatalf("the peer read a %d-byte message from a truncated stream", len(got))
	}
}

func TestTryWriteNeverWaitsAndStopsAfterClose(t *testing.T) {
	cc, _ := wsPair(t)
	small := appendTextFrame(nil, []byte(`{}`))
	cc.mu.Lock() // another writer (say, a pong to a slow peer) holds it
	ok, _, err := cc.TryWrite(small)
	cc.mu.Unlock()
	if ok || err != nil {
		t.Fatalf("TryWrite while the connection is held: ok %v, err %v; want to queue", ok, err)
	}
	if _, err := cc.Write([]byte{0x88, 2, 0x03, 0xe8}); err != nil { // close 1000
		t.Fatal(err)
	}
	if _, _, err := cc.TryWrite(small); err != errCloseSent {
		t.Fatalf("TryWrite after a close frame: %v, want errCloseSent", err)
	}
	if err := cc.WriteFrames(small); err != errCloseSent {
		t.Fatalf("WriteFrames after a close frame: %v, want errCloseSent", err)
	}
}
