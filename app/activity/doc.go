// Package activity knows who is active: each user's last seen (Redis,
// backed by the user_last_seen table through a batch writer) and, from
// it, where a message for them goes (seed 002: fast, delayed, released).
// It must not know what is delivered.
package activity
