package handlers

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// corkConn lets the WebSocket writer coalesce the frames of one batch into
// a single write system call. The library writes every frame straight to
// the connection; between Cork and Uncork those writes are buffered here
// and leave together. Writes made by the library on other goroutines
// (pongs, close frames) share the same lock and buffer, so order holds.
// A write that fails, or stops partway, is sticky: the connection is
// closed and later writes fail, since whatever followed (a close frame,
// say) would land inside a truncated frame. Safe for concurrent use.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    *[]byte
	err    error
	// wd is the write deadline in force. The WebSocket library sets the
	// deadline before every frame; setting the same one again costs a
	// runtime timer update per frame, so a repeat is skipped.
	wd    time.Time
	wdSet bool
}

// SetWriteDeadline implements net.Conn, skipping a repeat of the deadline
// in force.
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wdSet && t.Equal(c.wd) {
		return nil
	}
	c.wd, c.wdSet = t, true
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline implements net.Conn.
func (c *corkConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wd, c.wdSet = t, true
	return c.Conn.SetDeadline(t)
}

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

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
	n, err := c.Conn.Write(p)
	if err != nil {
		c.failLocked(err)
	}
	return n, err
}

func (c *corkConn) failLocked(err error) {
	if c.err == nil {
		c.err = err
		_ = c.Conn.Close() // the reader ends too
	}
}

// Cork starts buffering writes.
func (c *corkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork writes what was buffered in one call and stops buffering.
func (c *corkConn) Uncork() error { return c.uncork() }

func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	b := c.buf
	c.buf = nil
	if c.err != nil || b == nil {
		if b != nil {
			*b = (*b)[:0]
			corkBufs.Put(b)
		}
		return c.err
	}
	_, err := c.Conn.Write(*b)
	if err != nil {
		c.failLocked(err)
	}
	if cap(*b) <= 64<<10 { // keep pooled buffers small
		*b = (*b)[:0]
		corkBufs.Put(b)
	}
	return err
}

// corkListener wraps accepted connections in corkConn.
type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

// corkOf finds the corkConn under a request's connection (through TLS).
func corkOf(c net.Conn) *corkConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	cc, _ := c.(*corkConn)
	return cc
}
