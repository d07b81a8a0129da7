// Package delivery owns personal messages from ingest to the socket:
// validating an ingest call, routing each recipient by activity to the
// fast or delayed queue (package jobs runs the tasks), delivering a task
// (count, push, store in the user's shard, collapse), each user's unread
// counters (a Redis cache of the shards, rebuilt when missing, never
// racing a delivery), and retention. It pushes through package cluster
// and adds broadcast counts through package broadcast; it must not touch
// connections or know about HTTP.
package delivery
