// Package handlers owns the HTTP surface: Fiber routes for ingest, the user
// API, WebSocket and SSE transports, health and operations, and Server,
// which wires the listeners, the asynq worker and app together and shuts
// them down in order. Handlers parse, call app, and render; the contract's
// error body is produced in one place (errorHandler). Nothing imports this
// package but main.
package handlers
