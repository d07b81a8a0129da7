// Package frames builds the server-to-client frames of the protocol
// (hello, msg, unread, error, pong) and owns the unread snapshot they
// carry. It must not touch Redis or MySQL.
package frames
