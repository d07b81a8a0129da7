package handlers

import (
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawWrites: corkConn writes through a rawWriter where it can.
const rawWrites = true

// rawWriter writes to a non-blocking socket with write(2) made as a raw
// system call. When the socket buffer is full it waits in the netpoller
// (honouring the write deadline) if asked to, and otherwise returns what
// was written so far.
//
// Why not net.Conn.Write: a broadcast is one small write per connection,
// thousands in a row. A write the runtime knows as a system call lets
// sysmon take the goroutine's P away from it when it is slow (loopback
// writes under virtualisation often are), handing the P to another thread
// and parking this one when the write returns. A write to a non-blocking
// socket never blocks, so it is safe to make without telling the
// scheduler, as the runtime itself does for short calls.
//
// Its state lives here, with the connection, because the function handed
// to RawConn.Write escapes: a closure per write would cost an allocation
// per write. Not safe for concurrent use (corkConn holds its lock).
type rawWriter struct {
	rc   syscall.RawConn
	step func(fd uintptr) bool // w.write1, made once
	p    []byte
	n    int
	wait bool
	err  error
}

func newRawWriter(rc syscall.RawConn) *rawWriter {
	w := &rawWriter{rc: rc}
	w.step = w.write1
	return w
}

// write sends p on c's socket; unless wait, only what it takes at once.
func (w *rawWriter) write(c net.Conn, p []byte, wait bool) (int, error) {
	w.p, w.n, w.wait, w.err = p, 0, wait, nil
	err := w.rc.Write(w.step) // its own errors (deadline, closed) come as a *net.OpError
	n := w.n
	if err == nil && w.err != nil {
		err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: w.err}
	}
	w.p, w.err = nil, nil
	return n, err
}

// write1 is one try on the socket; false asks RawConn.Write to wait until
// it is writable (or the deadline passes) and try again.
func (w *rawWriter) write1(fd uintptr) bool {
	for w.n < len(w.p) {
		m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&w.p[w.n])), uintptr(len(w.p)-w.n))
		switch e {
		case 0:
			w.n += int(m)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return !w.wait
		default:
			w.err = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}
