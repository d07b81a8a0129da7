package rawio

import (
	"context"
	"net"
	"sync"
	"syscall"
)

// Conn is a net.Conn whose Read and Write are raw calls. As with any
// net.Conn, a Read may run beside a Write; concurrent Reads (or Writes) are
// serialised.
type Conn struct {
	net.Conn
	rmu sync.Mutex
	r   *Reader
	wmu sync.Mutex
	w   *Writer
}

// Wrap returns c with raw reads and writes when c is a socket this platform
// can do them on, and c itself otherwise. For stream sockets (TCP, unix
// stream): a read of zero bytes is taken as the peer's end of stream.
func Wrap(c net.Conn) net.Conn {
	rc := SyscallConn(c)
	if rc == nil {
		return c
	}
	return &Conn{Conn: c, r: NewReader(rc), w: NewWriter(rc)}
}

// Read is a raw recvfrom(2), waiting in the netpoller while there is no data.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.r.Read(c.Conn, p)
}

// Write is raw sendto(2)s until all of p is taken, waiting in the
// netpoller while the socket buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.w.Write(c.Conn, p)
}

// SyscallConn lets libraries that look under a connection (liveness
// checks) keep doing so.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// SyscallConn returns c's raw side when raw calls are on (Enabled and not
// switched off with Off) and c has one, and nil otherwise.
func SyscallConn(c net.Conn) syscall.RawConn {
	if !Enabled || Off {
		return nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Off switches raw calls off for connections wrapped from now on: a way
// out should a kernel ever disagree. The command sets it from
// PUSHDESK_RAW_IO=off (app.Config.RawIOOff) before it opens any.
var Off bool

// Dial dials with d and wraps the connection.
func Dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
