//go:build linux && !386

package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Enabled reports whether this platform has raw calls; elsewhere Writer,
// Reader and Wrap fall back to the connection's own methods.
const Enabled = true

// Writer writes to one non-blocking socket. Not safe for concurrent use.
type Writer struct {
	rc   syscall.RawConn
	step func(fd uintptr) bool // w.write1, made once
	once func(fd uintptr)      // w.writeOnce, made once
	p    []byte
	n    int
	err  error
}

// NewWriter writes through rc.
func NewWriter(rc syscall.RawConn) *Writer {
	w := &Writer{rc: rc}
	w.step = w.write1
	w.once = w.writeOnce
	return w
}

// Write sends all of p on c's socket (rc's), waiting while the socket
// buffer is full, until the write deadline.
func (w *Writer) Write(c net.Conn, p []byte) (int, error) {
	w.p, w.n, w.err = p, 0, nil
	return w.result(c, w.rc.Write(w.step))
}

// result is what a write returns: err is RawConn's own (deadline, closed,
// as a *net.OpError), else the system call's.
func (w *Writer) result(c net.Conn, err error) (int, error) {
	n := w.n
	if err == nil && w.err != nil {
		err = opError("write", c, w.err)
	}
	w.p, w.err = nil, nil
	return n, err
}

// WriteNow makes one try to send p and returns what the socket took. It
// never waits and ignores the write deadline, so it skips the netpoller's
// write bookkeeping: it holds the descriptor open for the call
// (RawConn.Control) but not Go's write lock. The caller serialises writes
// to the connection.
func (w *Writer) WriteNow(c net.Conn, p []byte) (int, error) {
	w.p, w.n, w.err = p, 0, nil
	return w.result(c, w.rc.Control(w.once))
}

func (w *Writer) writeOnce(fd uintptr) { w.write1(fd) }

// write1 is one try on the socket; false asks RawConn.Write to wait until
// it is writable (or the deadline passes) and try again.
func (w *Writer) write1(fd uintptr) bool {
	for w.n < len(w.p) {
		// sendto rather than write: it goes straight to the socket, where
		// write(2) first passes the file layer; about 4% less per call on
		// loopback. MSG_NOSIGNAL: a reset peer gives EPIPE, no SIGPIPE.
		m, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&w.p[w.n])), uintptr(len(w.p)-w.n), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			w.n += int(m)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			w.err = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}

// Reader reads from one non-blocking socket. Not safe for concurrent use.
type Reader struct {
	rc   syscall.RawConn
	step func(fd uintptr) bool // r.read1, made once
	p    []byte
	n    int
	err  error
}

// NewReader reads through rc.
func NewReader(rc syscall.RawConn) *Reader {
	r := &Reader{rc: rc}
	r.step = r.read1
	return r
}

// Read reads into p from c's socket (rc's), waiting for data until the
// read deadline; io.EOF when the peer has closed its side.
func (r *Reader) Read(c net.Conn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.err = p, 0, nil
	err := r.rc.Read(r.step)
	n := r.n
	if err == nil && r.err != nil {
		err = r.err
		if err != io.EOF {
			err = opError("read", c, err)
		}
	}
	r.p, r.err = nil, nil
	return n, err
}

func (r *Reader) read1(fd uintptr) bool {
	for {
		// recvfrom rather than read, for the reason sendto is used above.
		m, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.p[0])), uintptr(len(r.p)), 0, 0, 0)
		switch e {
		case 0:
			if m == 0 {
				r.err = io.EOF
			}
			r.n = int(m)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.err = os.NewSyscallError("read", e)
			return true
		}
	}
}

func opError(op string, c net.Conn, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
