// Package broadcast owns messages sent to a segment of users at once:
// submitting and scheduling them (once, at a time, or on a cron spec),
// the fan-out to every instance and from there to its connections, and
// each user's broadcast state (segments, the read mark, the broadcast part
// of their unread counts). A broadcast is stored once, never per user.
// It reaches other instances only through package cluster and must not
// touch personal messages or their counters.
package broadcast
