// Package hub keeps this process's live connections: which clients a user
// has here, their outgoing queues, and the one-writer-per-connection loop
// that drains them. It knows nothing about Redis, MySQL or message
// semantics; transports (WebSocket, SSE) plug in through Writer.
package hub
