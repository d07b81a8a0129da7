// Package apierr is the error a client caused or must be told about: an
// HTTP status, the contract's snake_case code and a message. Every app
// package makes its own errors with it; handlers render them as
// {"error":{"code","message"}} and WebSocket error frames.
package apierr
