//go:build !linux || 386

package rawio

import (
	"net"
	"syscall"
)

// Enabled reports whether this platform has raw calls; here it has not
// (32-bit x86 Linux reaches sendto and recvfrom only through socketcall), and
// Writer, Reader and Wrap use the connection's own methods.
const Enabled = false

// Writer falls back to net.Conn.Write.
type Writer struct{}

func NewWriter(syscall.RawConn) *Writer { return &Writer{} }

func (*Writer) Write(c net.Conn, p []byte) (int, error) { return c.Write(p) }

// WriteNow falls back to net.Conn.Write too: it may wait.
func (*Writer) WriteNow(c net.Conn, p []byte) (int, error) { return c.Write(p) }

// Reader falls back to net.Conn.Read.
type Reader struct{}

func NewReader(syscall.RawConn) *Reader { return &Reader{} }

func (*Reader) Read(c net.Conn, p []byte) (int, error) { return c.Read(p) }
