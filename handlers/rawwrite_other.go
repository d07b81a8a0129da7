//go:build !linux

package handlers

import (
	"net"
	"syscall"
)

// rawWrites: corkConn writes through net.Conn.Write here.
const rawWrites = false

// rawWriter is not implemented here; newCorkConn never makes one.
type rawWriter struct{}

func newRawWriter(syscall.RawConn) *rawWriter { return &rawWriter{} }

func (*rawWriter) write(c net.Conn, p []byte, _ bool) (int, error) { return c.Write(p) }
