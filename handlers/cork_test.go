package handlers

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/rawio"
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
	cc := newCorkConn(sc)
	if !rawio.Enabled && cc.raw != nil {
		t.Fatal("raw writes set up where they are not implemented")
	}
	return cc, r.c
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

// textFrame is one unmasked server text frame of n copies of b.
func textFrame(n int, b byte) []byte {
	head := []byte{0x81, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	return append(head, bytes.Repeat([]byte{b}, n)...)
}

// TryWriteNow hands over what the socket takes at once and keeps the
// rest; the next write sends the rest first, so the peer sees whole frames
// in order.
func TestTryWriteNowNeverWaitsAndTheRestGoesFirst(t *testing.T) {
	t.Parallel()
	cc, client := wsPair(t)
	if !cc.canTry() {
		t.Skip("no raw writes on this platform")
	}
	_ = cc.SetWriteDeadline(time.Now().Add(time.Minute))
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second)) // a garbled stream fails, not hangs
	done := make(chan struct{})
	var pending bool
	var err error
	go func() { pending, err = cc.TryWriteNow(textFrame(96<<10, 'a')); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("TryWriteNow waited for a peer that reads nothing")
	}
	if err != nil || !pending {
		t.Fatalf("TryWriteNow = %v, %v; want bytes kept and no error", pending, err)
	}
	// Nobody reads yet, so a write that waits holds the connection:
	// TryWriteNow declines rather than wait behind it.
	wrote := make(chan error, 1)
	go func() { _, err := cc.Write(textFrame(5, 'z')); wrote <- err }()
	declined := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cc.mu.TryLock() { // the write has not begun: look again
			cc.mu.Unlock()
			continue
		}
		if _, err := cc.TryWriteNow(textFrame(3, 'x')); errors.Is(err, hub.ErrBusy) {
			declined = true
			break
		}
	}
	if !declined {
		t.Fatal("TryWriteNow never declined while a write waited for the peer")
	}
	for i, want := range [][]byte{bytes.Repeat([]byte{'a'}, 96<<10), []byte("zzzzz")} {
		_, got, err := client.ReadMessage()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes (%v), want %d", i, len(got), err, len(want))
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("the write behind the kept bytes: %v", err)
	}
}

// While the writer has a batch corked, a direct write declines (its
// frames would otherwise land before the batch's).
func TestTryWriteNowDeclinesWhileCorked(t *testing.T) {
	cc, _ := wsPair(t)
	cc.Cork()
	if _, err := cc.TryWriteNow(textFrame(3, 'x')); !errors.Is(err, hub.ErrBusy) {
		t.Fatalf("TryWriteNow during a corked batch: %v, want hub.ErrBusy", err)
	}
	if cc.buf != nil && len(*cc.buf) > 0 || len(cc.pending) > 0 {
		t.Fatal("a declined direct write left bytes behind")
	}
}

// Flush sends what TryWriteNow kept, and a TryWriteNow behind kept bytes
// adds to them rather than overtaking them.
func TestFlushSendsWhatTryWriteNowKept(t *testing.T) {
	t.Parallel()
	cc, client := wsPair(t)
	if !cc.canTry() {
		t.Skip("no raw writes on this platform")
	}
	_ = cc.SetWriteDeadline(time.Now().Add(time.Minute))
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	sizes := map[byte]int{'a': 96 << 10, 'b': 5} // the socket cannot take the first at once
	for _, b := range []byte{'a', 'b'} {
		if pending, err := cc.TryWriteNow(textFrame(sizes[b], b)); err != nil || !pending {
			t.Fatalf("TryWriteNow %c = %v, %v; want bytes kept", b, pending, err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- cc.Flush() }()
	for _, b := range []byte{'a', 'b'} {
		_, got, err := client.ReadMessage()
		if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{b}, sizes[b])) {
			t.Fatalf("message %c: %d bytes (%v)", b, len(got), err)
		}
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if pending, err := cc.TryWriteNow(textFrame(1, 'c')); pending || err != nil {
		t.Fatalf("after Flush: pending %v, err %v", pending, err)
	}
}

// A direct write after the deadline in force has passed still goes out: it
// cannot wait, so the deadline has nothing to bound.
func TestTryWriteNowIgnoresAPassedDeadline(t *testing.T) {
	cc, client := wsPair(t)
	if !cc.canTry() {
		t.Skip("no raw writes on this platform")
	}
	_ = cc.SetWriteDeadline(time.Now().Add(-time.Second))
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if pending, err := cc.TryWriteNow(textFrame(4, 'd')); pending || err != nil {
		t.Fatalf("TryWriteNow past the deadline = %v, %v", pending, err)
	}
	if _, got, err := client.ReadMessage(); err != nil || string(got) != "dddd" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// appendTextFrame's three length encodings, read by the library.
func TestAppendTextFrameLengths(t *testing.T) {
	cc, client := wsPairBuffers(t, 0) // 0.7 MiB, and no socket needs to fill
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	sizes := []int{0, 125, 126, 0xFFFF, 0x10000, 300 << 10}
	go func() {
		for i, n := range sizes {
			_, _ = cc.Write(appendTextFrame(nil, bytes.Repeat([]byte{byte('a' + i)}, n)))
		}
	}()
	for i, n := range sizes {
		typ, got, err := client.ReadMessage()
		if err != nil || typ != websocket.TextMessage || !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + i)}, n)) {
			t.Fatalf("frame of %d bytes: type %d, %d bytes, %v", n, typ, len(got), err)
		}
	}
}

// After the library's close frame no direct write may follow: the peer
// must not see data after a close (RFC 6455 section 5.5.1).
func TestTryWriteNowFailsAfterACloseFrame(t *testing.T) {
	cc, client := wsPair(t)
	if pending, err := cc.TryWriteNow(appendTextFrame(nil, []byte("before"))); pending || err != nil {
		t.Fatalf("TryWriteNow before the close = %v, %v", pending, err)
	}
	// The close frame as the library's WriteControl writes it: one Write.
	payload := websocket.FormatCloseMessage(1009, "too big")
	if _, err := cc.Write(append([]byte{0x88, byte(len(payload))}, payload...)); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.TryWriteNow(appendTextFrame(nil, []byte("after"))); !errors.Is(err, websocket.ErrCloseSent) {
		t.Fatalf("TryWriteNow after a close frame: %v, want websocket.ErrCloseSent", err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, got, err := client.ReadMessage(); err != nil || string(got) != "before" {
		t.Fatalf("first frame %q, %v", got, err)
	}
	if _, _, err := client.ReadMessage(); !websocket.IsCloseError(err, 1009) {
		t.Fatalf("then %v, want the close frame and nothing after it", err)
	}
}
