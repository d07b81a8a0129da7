package handlers

import (
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawWrites: corkConn writes through rawWrite where it can.
const rawWrites = true

// rawWrite writes p to a non-blocking socket with write(2) made as a raw
// system call. When the socket buffer is full it waits in the netpoller
// (honouring the write deadline) if wait is set, and otherwise returns
// what was written so far.
//
// Why not net.Conn.Write: a broadcast is one small write per connection,
// thousands in a row. A write the runtime knows as a system call lets
// sysmon take the goroutine's P away from it when it is slow (loopback
// writes under virtualisation often are), which hands the P to another
// thread and parks this one when the write returns: at 15,000 writes that
// thread churn and sysmon's own polling cost a quarter of the fan-out's
// CPU. A write to a non-blocking socket never blocks, so it is safe to make
// without telling the scheduler, as the runtime itself does for short
// calls.
func rawWrite(c net.Conn, rc syscall.RawConn, p []byte, wait bool) (int, error) {
	n := 0
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
			switch e {
			case 0:
				n += int(m)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return !wait // false: wait until writable (or the deadline)
			default:
				werr = os.NewSyscallError("write", e)
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return n, err
}
