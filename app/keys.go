package app

import "strconv"

// Every Redis key Pushdesk owns (asynq keeps its own "asynq:" keys) is
// built here, under the "pd:" prefix.

const keyPrefix = "pd:"

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// keyUnread is a hash kind → unread count, plus fieldUnacked and
// fieldExists. It is a cache of the shard tables, rebuilt when missing.
func keyUnread(uid uint64) string { return keyPrefix + "unread:" + u64(uid) }

// keyUserConns is a hash instance id → number of this user's connections there.
func keyUserConns(uid uint64) string { return keyPrefix + "uconn:" + u64(uid) }

// keyInstanceChannel is the pub/sub channel an instance listens on.
func keyInstanceChannel(instance string) string { return keyPrefix + "inst:" + instance }

// keyNodeCounter hands out id-generator node numbers.
const keyNodeCounter = keyPrefix + "node"

const (
	// fieldUnacked counts unread messages no client has acknowledged.
	fieldUnacked = "~unacked"
	// fieldExists marks a rebuilt hash, so that "all zero" differs from "missing".
	fieldExists = "~"
)

// keyIdempotency holds an ingest call's result under its idempotency key.
func keyIdempotency(k string) string { return keyPrefix + "idem:" + k }

// keySeen is a user's last-seen time (unix ms; "0" = never seen, cached).
func keySeen(uid uint64) string { return keyPrefix + "seen:" + u64(uid) }

// keyToken caches a user-center answer under the token's SHA-256.
func keyToken(sum string) string { return keyPrefix + "tok:" + sum }
