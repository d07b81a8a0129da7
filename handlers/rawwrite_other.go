//go:build !linux

package handlers

import (
	"net"
	"syscall"
)

// rawWrites: corkConn writes through net.Conn.Write here.
const rawWrites = false

// rawWrite is net.Conn.Write where raw writes are not implemented; wait is
// always honoured, as newCorkConn never sets raw here.
func rawWrite(c net.Conn, _ syscall.RawConn, p []byte, _ bool) (int, error) { return c.Write(p) }
