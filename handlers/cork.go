package handlers

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/rawio"
)

// corkConn lets the WebSocket writer coalesce the frames of one batch into
// a single write system call. The library writes every frame straight to
// the connection; between Cork and Uncork those writes are buffered here
// and leave together. Writes made by the library on other goroutines
// (pongs, close frames) share the same lock and buffer, so order holds.
// TryWriteNow writes without waiting for the peer and keeps what the socket
// would not take; that goes out first with the next write (or Flush).
// A write that fails, or stops partway, is sticky: the connection is
// closed and later writes fail, since whatever followed (a close frame,
// say) would land inside a truncated frame. Safe for concurrent use.
type corkConn struct {
	net.Conn
	// raw, when set, writes on the socket instead of Conn.Write, and
	// makes TryWriteNow possible.
	raw *rawio.Writer
	// rawRead, set with raw, reads on the socket; rmu serialises reads.
	rawRead *rawio.Reader
	rmu     sync.Mutex
	mu      sync.Mutex
	corked  bool
	buf     *[]byte
	pending []byte // what TryWriteNow could not write yet
	err     error
	// wd is the write deadline in force. The WebSocket library sets the
	// deadline before every frame; setting the same one again costs a
	// runtime timer update per frame, so a repeat is skipped.
	wd    time.Time
	wdSet bool
	// closeSent: the library wrote a close frame, after which no data
	// frame may follow (RFC 6455 section 5.5.1); direct writes then fail,
	// as the library's own writes do.
	closeSent bool
}

// isCloseFrame reports whether p is one whole close frame as the library
// writes it: one Write, unmasked, at most 125 bytes of payload.
func isCloseFrame(p []byte) bool {
	return len(p) >= 2 && len(p) <= 127 && p[0] == 0x88 && int(p[1]) == len(p)-2
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
	if isCloseFrame(p) {
		c.closeSent = true
	}
	if c.corked {
		if c.buf == nil {
			c.buf = corkBufs.Get().(*[]byte)
		}
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	n, err := c.write(p)
	if err != nil {
		c.failLocked(err)
	}
	return n, err
}

// write sends all of p on the socket, waiting for the peer.
func (c *corkConn) write(p []byte) (int, error) {
	if c.raw != nil {
		return c.raw.Write(c.Conn, p)
	}
	return c.Conn.Write(p)
}

func (c *corkConn) failLocked(err error) {
	if c.err == nil {
		c.err = err
		_ = c.Conn.Close() // the reader ends too
	}
}

// flushLocked writes what TryWriteNow kept, waiting for the peer.
func (c *corkConn) flushLocked() error {
	if c.err != nil {
		return c.err
	}
	if len(c.pending) == 0 {
		return nil
	}
	if _, err := c.write(c.pending); err != nil {
		c.failLocked(err)
		return err
	}
	c.pending = nil
	return nil
}

// Cork starts buffering writes.
func (c *corkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork writes what was buffered (after anything TryWriteNow kept) in one
// call and stops buffering.
func (c *corkConn) Uncork() error { return c.uncork() }

// TryWriteNow writes p with one try on the socket, unless a write that
// may wait holds the connection or a batch is corked (then hub.ErrBusy,
// and nothing was written). What the socket does not take at once is kept
// for the next write or Flush, and pending reports that some was; p
// itself is not kept. Only for connections with a raw side (canTry).
func (c *corkConn) TryWriteNow(p []byte) (pending bool, err error) {
	if !c.mu.TryLock() {
		return false, hub.ErrBusy
	}
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return false, c.err
	case c.closeSent:
		return false, websocket.ErrCloseSent
	case c.corked:
		return false, hub.ErrBusy
	case len(c.pending) > 0: // behind what is already waiting
		c.pending = append(c.pending, p...)
		return true, nil
	}
	// One try that ignores the write deadline (a write that cannot wait
	// has no use for one); the writer sets a fresh deadline before any
	// write that may wait.
	n, err := c.raw.WriteNow(c.Conn, p)
	if err != nil {
		c.failLocked(err)
		return false, err
	}
	if n < len(p) {
		c.pending = append([]byte(nil), p[n:]...)
	}
	return len(c.pending) > 0, nil
}

// canTry reports whether TryWriteNow can write without waiting.
func (c *corkConn) canTry() bool { return c.raw != nil }

// Flush writes what TryWriteNow kept, waiting for the peer.
func (c *corkConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	b := c.buf
	c.buf = nil
	err := c.flushLocked()
	if b == nil {
		return err
	}
	if err == nil {
		if _, err = c.write(*b); err != nil {
			c.failLocked(err)
		}
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
	return newCorkConn(c), nil
}

// newCorkConn wraps c, reading and writing through its raw side when it
// has one (see package rawio).
func newCorkConn(c net.Conn) *corkConn {
	cc := &corkConn{Conn: c}
	if rc := rawio.SyscallConn(c); rc != nil {
		cc.raw = rawio.NewWriter(rc)
		cc.rawRead = rawio.NewReader(rc)
	}
	return cc
}

// Read reads through the raw side when there is one.
func (c *corkConn) Read(p []byte) (int, error) {
	if c.rawRead != nil {
		c.rmu.Lock()
		defer c.rmu.Unlock()
		return c.rawRead.Read(c.Conn, p)
	}
	return c.Conn.Read(p)
}

// corkOf finds the corkConn under a request's connection (through TLS).
func corkOf(c net.Conn) *corkConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	cc, _ := c.(*corkConn)
	return cc
}
