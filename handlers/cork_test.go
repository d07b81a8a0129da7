package handlers

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// wsPair returns the server side of a real loopback WebSocket as a
// corkConn with small socket buffers, and the library's client on the
// other end.
func wsPair(t *testing.T) (*corkConn, *websocket.Conn) {
	t.Helper()
	return wsPairBuffers(t, 4096)
}

// wsPairBuffers is wsPair with socket buffers of size bytes (0: the
// kernel's own). Through 4 KiB buffers a transfer runs at the pace of
// delayed ACKs, tens of KiB a second: only tests that need a socket that
// fills should have them.
func wsPairBuffers(t *testing.T, size int) (*corkConn, *websocket.Conn) {
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
		if size > 0 {
			_ = nc.(*net.TCPConn).SetReadBuffer(size)
		}
		u, _ := url.Parse("ws://" + ln.Addr().String() + "/ws")
		c, _, err := websocket.NewClient(nc, u, nil, 1024, 1024)
		got <- res{c, err}
	}()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	if size > 0 {
		_ = sc.(*net.TCPConn).SetWriteBuffer(size)
	}
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
	return &corkConn{Conn: sc}, r.c
}

// A batch that fails with a frame half sent ends the connection: nothing
// may follow the truncated frame (the library's close frame, say), or the
// peer would read it as payload.
func TestFailedWriteIsStickyAndEndsTheConnection(t *testing.T) {
	t.Parallel()
	cc, client := wsPair(t)
	big := append([]byte{0x81, 127, 0, 0, 0, 0, 0, 4, 0, 0}, bytes.Repeat([]byte{'b'}, 256<<10)...) // one 256 KiB text frame
	cc.Cork()
	if _, err := cc.Write(big); err != nil {
		t.Fatal(err)
	}
	_ = cc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)) // nobody reads: it cannot all go
	if err := cc.Uncork(); err == nil {
		t.Fatal("256 KiB went to a peer that reads nothing, through 4 KiB buffers")
	}
	_ = cc.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := cc.Write([]byte{0x88, 2, 0x03, 0xe9}); err == nil { // close 1001
		t.Fatal("a write after a failed one went out")
	}
	// The peer gets the truncated frame's start and then the end of the
	// connection, never a message made of the wrong bytes.
	if _, got, err := client.ReadMessage(); err == nil {
		t.Fatalf("the peer read a %d-byte message from a truncated stream", len(got))
	}
}

// corkConn skips only a repeat of the write deadline in force: a new one,
// earlier or later, always reaches the socket.
func TestCorkConnDeadlineChangesTakeEffect(t *testing.T) {
	cc, _ := wsPair(t)
	future := time.Now().Add(time.Minute)
	for range 2 { // the second is skipped
		if err := cc.SetWriteDeadline(future); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cc.Write([]byte{0x81, 0}); err != nil { // an empty text frame
		t.Fatalf("write before the deadline: %v", err)
	}
	if err := cc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Write([]byte{0x81, 0}); err == nil {
		t.Fatal("write after a lapsed deadline succeeded: the new deadline was skipped")
	}
}
