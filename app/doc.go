// Package app owns Pushdesk's configuration, wiring and domain services:
// ingest validation, delivery (store, count, push), the unread counters, the
// connection registry and cross-instance routing. It talks to Redis through
// rueidis and to MySQL through the models package. It must not import Fiber
// handlers or know about HTTP status codes beyond the Error type it returns.
package app
