// Package jobs owns the asynq task types, their payloads and handlers, the
// queue layout and the asynq server configuration. Handlers decode and call
// app; they hold no domain logic and are idempotent (asynq delivers at
// least once).
package jobs
