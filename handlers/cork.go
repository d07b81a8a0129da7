package handlers

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// corkConn is the public listener's connection. It lets the WebSocket
// writer coalesce the frames of one batch into a single write system call
// (between Cork and Uncork writes are buffered and leave together), and
// on plain TCP it carries frames the server framed itself: WriteFrames
// (blocking) and TryWrite (one non-blocking system call). Writes made by
// the library on other goroutines (pongs, close frames) share the same
// lock, so frames never interleave on the wire. Safe for concurrent use.
//
// A write that fails, or stops partway, is sticky: the connection is
// closed and every later write fails, since whatever followed would land
// inside a truncated frame.
type corkConn struct {
	net.Conn
	raw    syscall.RawConn // nil when the conn is not a socket
	mu     sync.Mutex
	corked bool
	buf    *[]byte
	// backlog is the rest of a partial TryWrite; it goes before anything
	// else is written.
	backlog []byte
	// deadline is the write deadline last set on Conn. The library sets
	// its own for control frames; the server's frames make sure one at
	// least a second short of writeWait is in place.
	deadline  time.Time
	err       error
	closeSent bool // a WebSocket close frame went out: no data after it
}

var (
	errCloseSent = errors.New("websocket close frame already sent")
	corkBufs     = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

// SetWriteDeadline records the deadline (fasthttp/websocket sets one on the
// connection only around its own writes).
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetWriteDeadline(t)
}

// ensureDeadlineLocked gives the server's own writes a deadline between
// writeWait-1s and writeWait away, touching the timer at most about once
// a second.
func (c *corkConn) ensureDeadlineLocked() {
	now := time.Now()
	if c.deadline.IsZero() || c.deadline.Sub(now) < writeWait-time.Second {
		c.deadline = now.Add(writeWait)
		_ = c.Conn.SetWriteDeadline(c.deadline)
	}
}

// writeLocked writes the backlog, then p, to Conn; a failure is sticky.
func (c *corkConn) writeLocked(p []byte) error {
	if c.err != nil {
		return c.err
	}
	if c.backlog != nil {
		b := c.backlog
		c.backlog = nil
		if _, err := c.Conn.Write(b); err != nil {
			return c.failLocked(err)
		}
	}
	if len(p) == 0 {
		return nil
	}
	if _, err := c.Conn.Write(p); err != nil {
		return c.failLocked(err)
	}
	return nil
}

func (c *corkConn) failLocked(err error) error {
	if c.err == nil {
		c.err = err
		_ = c.Conn.Close() // the reader ends too
	}
	return c.err
}

// Write is the library's way out (its frames, and TLS records).
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.corked {
		if c.buf == nil {
			c.buf = corkBufs.Get().(*[]byte)
		}
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	if err := c.writeLocked(p); err != nil {
		return 0, err
	}
	if len(p) > 0 && p[0] == 0x88 { // FIN + close opcode, on plain TCP
		c.closeSent = true
	}
	return len(p), nil
}

// Cork starts buffering writes.
func (c *corkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork writes what was buffered in one call and stops buffering.
func (c *corkConn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	b := c.buf
	c.buf = nil
	if b == nil {
		return c.writeLocked(nil)
	}
	err := c.writeLocked(*b)
	if cap(*b) <= 64<<10 { // keep pooled buffers small
		*b = (*b)[:0]
		corkBufs.Put(b)
	}
	return err
}

// WriteFrames writes frames the server framed itself (blocking, under a
// write deadline).
func (c *corkConn) WriteFrames(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.closeSent {
		return errCloseSent
	}
	c.ensureDeadlineLocked()
	return c.writeLocked(p)
}

// Flush sends the backlog of a partial TryWrite (blocking, under a write
// deadline).
func (c *corkConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ensureDeadlineLocked()
	return c.writeLocked(nil)
}

// TryWrite writes p, frames the server framed itself, with one
// non-blocking system call. ok is false when it wrote nothing: the socket
// is full, another write holds the connection, or something must go
// first. When the socket took part of p, the rest is kept as backlog and
// rest is true: the next write (Flush) sends it first.
func (c *corkConn) TryWrite(p []byte) (ok, rest bool, err error) {
	if c.raw == nil || !c.mu.TryLock() { // never wait, not even for a pong
		return false, false, nil
	}
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return false, false, c.err
	case c.closeSent:
		return false, false, errCloseSent
	case c.corked || c.backlog != nil:
		return false, false, nil
	}
	c.ensureDeadlineLocked() // the runtime refuses any write past it
	var n int
	var werr error
	if err := c.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), p)
		return true // never wait for the socket: the caller queues instead
	}); err != nil {
		return false, false, c.failLocked(err)
	}
	switch {
	case werr == syscall.EAGAIN || werr == syscall.EINTR || werr == nil && n <= 0:
		return false, false, nil
	case werr != nil:
		return false, false, c.failLocked(werr)
	case n < len(p):
		c.backlog = append([]byte(nil), p[n:]...)
		return true, true, nil
	}
	return true, false, nil
}

// corkListener wraps accepted connections in corkConn.
type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &corkConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		cc.raw, _ = sc.SyscallConn()
	}
	return cc, nil
}

// corkOf finds the corkConn under a request's connection (through TLS);
// plain is false when TLS is in between (raw frames cannot go around it).
func corkOf(c net.Conn) (cc *corkConn, plain bool) {
	plain = true
	if t, ok := c.(*tls.Conn); ok {
		c, plain = t.NetConn(), false
	}
	cc, _ = c.(*corkConn)
	return cc, plain
}
