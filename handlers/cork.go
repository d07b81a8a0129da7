package handlers

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
)

// corkConn lets the WebSocket writer coalesce the frames of one batch into
// a single write system call. The library writes every frame straight to
// the connection; between Cork and Uncork those writes are buffered here
// and leave together. Writes made by the library on other goroutines
// (pongs, close frames) share the same lock and buffer, so order holds.
// Safe for concurrent use.
type corkConn struct {
	net.Conn
	raw    syscall.RawConn // nil when the conn is not a socket
	mu     sync.Mutex
	corked bool
	buf    *[]byte
	// backlog is the rest of a partial TryWrite; it goes before anything
	// else is written.
	backlog []byte
}

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.flushBacklogLocked(); err != nil {
		return 0, err
	}
	if c.corked {
		if c.buf == nil {
			c.buf = corkBufs.Get().(*[]byte)
		}
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
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
	if err := c.flushBacklogLocked(); err != nil {
		return err
	}
	if c.buf == nil {
		return nil
	}
	b := c.buf
	c.buf = nil
	_, err := c.Conn.Write(*b)
	if cap(*b) <= 64<<10 { // keep pooled buffers small
		*b = (*b)[:0]
		corkBufs.Put(b)
	}
	return err
}

// errNoRaw means the connection offers no non-blocking write.
var errNoRaw = errors.New("no raw socket")

// TryWrite writes p with one non-blocking system call. ok is false when
// the socket took nothing (or cannot be written this way, or is corked).
// When it took part of p, the rest is kept as backlog and rest is true:
// the next Write, Uncork or Flush sends it first.
func (c *corkConn) TryWrite(p []byte) (ok, rest bool, err error) {
	if c.raw == nil {
		return false, false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked || c.backlog != nil {
		return false, false, nil
	}
	var n int
	var werr error
	if err := c.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), p)
		return true // never wait for the socket: the caller queues instead
	}); err != nil {
		return false, false, err
	}
	switch {
	case werr == syscall.EAGAIN || werr == syscall.EINTR:
		return false, false, nil
	case werr != nil:
		return false, false, werr
	case n <= 0:
		return false, false, nil
	case n < len(p):
		c.backlog = append([]byte(nil), p[n:]...)
		return true, true, nil
	}
	return true, false, nil
}

// Flush sends the backlog of a partial TryWrite (blocking, under the
// connection's write deadline).
func (c *corkConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushBacklogLocked()
}

func (c *corkConn) flushBacklogLocked() error {
	if c.backlog == nil {
		return nil
	}
	b := c.backlog
	c.backlog = nil
	_, err := c.Conn.Write(b)
	return err
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
