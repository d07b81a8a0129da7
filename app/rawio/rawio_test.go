package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// tcpPair returns a wrapped client side and the plain server side of a
// loopback TCP connection.
func tcpPair(t testing.TB) (*Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	w, ok := Wrap(c).(*Conn)
	if !ok {
		if !Enabled {
			t.Skip("no raw calls on this platform")
		}
		t.Fatalf("Wrap(%T) did not wrap", c)
	}
	return w, s
}

func TestRoundTripAndEOF(t *testing.T) {
	c, s := tcpPair(t)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	if _, err := s.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "world" {
		t.Fatalf("read %q, %v", buf, err)
	}
	s.Close()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
}

// A write larger than the socket buffers waits in the netpoller for the
// peer and then delivers every byte, in order.
func TestWriteWaitsForASlowPeer(t *testing.T) {
	c, s := tcpPair(t)
	big := make([]byte, 16<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // let the buffers fill
		b, _ := io.ReadAll(s)
		got <- b
	}()
	if n, err := c.Write(big); n != len(big) || err != nil {
		t.Fatalf("wrote %d, %v", n, err)
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("peer got %d bytes, not what was written", len(b))
	}
}

func TestDeadlines(t *testing.T) {
	c, _ := tcpPair(t)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	// A peer that reads nothing: the write fills the buffers and then
	// times out, reporting what it wrote.
	_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := c.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == 64<<20 {
		t.Fatalf("write past its deadline: %d, %v", n, err)
	}
}

func TestErrorsAfterClose(t *testing.T) {
	c, _ := tcpPair(t)
	c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// The peer resets the connection: the error is a *net.OpError around the
// system call's, as with net.Conn.
func TestWriteToAResetPeer(t *testing.T) {
	c, s := tcpPair(t)
	_ = s.(*net.TCPConn).SetLinger(0)
	s.Close() // RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("write to a reset peer: %v", err)
	}
}

// Concurrent writers do not interleave inside one another's writes.
func TestConcurrentWritesStayWhole(t *testing.T) {
	c, s := tcpPair(t)
	const writers, each, size = 8, 50, 4096
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range each {
				if _, err := c.Write(b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); c.Close() }()
	all, err := io.ReadAll(s)
	if err != nil || len(all) != writers*each*size {
		t.Fatalf("read %d bytes, %v", len(all), err)
	}
	for i := 0; i < len(all); i += size {
		if bytes.Count(all[i:i+size], all[i:i+1]) != size {
			t.Fatalf("write at %d is interleaved", i)
		}
	}
}

func TestWrapLeavesWhatItCannotReach(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a net.Pipe has no socket, yet it was wrapped")
	}
	c, _ := tcpPair(t)
	if _, err := c.SyscallConn(); err != nil {
		t.Fatalf("wrapped conn hides its socket: %v", err)
	}
}

func TestOffSwitch(t *testing.T) {
	c, _ := tcpPair(t)
	Off = true
	defer func() { Off = false }()
	if Wrap(c.Conn) != c.Conn {
		t.Fatal("wrapped with raw calls switched off")
	}
}

// WriteNow takes what the socket takes at once, ignores a passed write
// deadline, and fails on a closed conn instead of touching its descriptor.
func TestWriteNow(t *testing.T) {
	c, s := tcpPair(t)
	_ = c.SetWriteDeadline(time.Now().Add(-time.Second))
	if n, err := c.w.WriteNow(c.Conn, []byte("hi")); n != 2 || err != nil {
		t.Fatalf("WriteNow past the deadline = %d, %v", n, err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(s, b); err != nil || string(b) != "hi" {
		t.Fatalf("peer read %q, %v", b, err)
	}
	// A peer that reads nothing: one call returns with part taken, at once.
	start := time.Now()
	n, err := c.w.WriteNow(c.Conn, make([]byte, 64<<20))
	if err != nil || n == 0 || n == 64<<20 {
		t.Fatalf("WriteNow to a full socket = %d, %v", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("WriteNow waited %v", d)
	}
	if n, err := c.w.WriteNow(c.Conn, []byte("x")); n != 0 || err != nil {
		t.Fatalf("WriteNow to a full socket again = %d, %v", n, err)
	}
	c.Close()
	if _, err := c.w.WriteNow(c.Conn, []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteNow after close: %v", err)
	}
}

// One 200-byte send to a peer that drains: the per-call cost of the two
// non-waiting paths (go test -bench Send ./app/rawio).
func BenchmarkSend(b *testing.B) {
	for _, tc := range []struct {
		name string
		send func(c *Conn, p []byte) (int, error)
	}{
		{"Write", func(c *Conn, p []byte) (int, error) { return c.w.Write(c.Conn, p) }},
		{"WriteNow", func(c *Conn, p []byte) (int, error) { return c.w.WriteNow(c.Conn, p) }},
		{"net.Conn", func(c *Conn, p []byte) (int, error) { return c.Conn.Write(p) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, s := tcpPair(b)
			go func() { _, _ = io.Copy(io.Discard, s) }()
			p := make([]byte, 200)
			b.ResetTimer()
			for b.Loop() {
				if _, err := tc.send(c, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
