package delivery

import (
	"strconv"

	"github.com/pushdesk/pushdesk/internal/rkey"
)

// Every Redis key Pushdesk owns (asynq keeps its own "asynq:" keys) is
// built here, under the "pd:" prefix. A user's keys carry the user's hash
// tag (rkey.User), so each script about one user runs in one cluster slot.

const keyPrefix = "pd:"

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

// keyUnread is a hash kind → unread count, plus fieldUnacked and
// fieldExists. It is a cache of the shard tables, rebuilt when missing.
func keyUnread(uid uint64) string { return rkey.User(uid, "unread") }

const (
	// fieldUnacked counts unread messages no client has acknowledged.
	fieldUnacked = "~unacked"
	// fieldExists marks a rebuilt hash, so that "all zero" differs from "missing".
	fieldExists = "~"
)

// keyIdempotency holds an ingest call's result under its idempotency key.
func keyIdempotency(k string) string { return keyPrefix + "idem:" + k }

// keyIdempotencyPlan holds the rest of an ingest call that failed after
// its delayed part was enqueued (see ingestClaimed).
func keyIdempotencyPlan(k string) string { return keyPrefix + "idemplan:" + k }

// keyUnreadVersion moves with every count change and delivery of a user;
// keyInFlight is a sorted set of the user's message ids counted or pushed
// but not yet committed (score: when the mark lapses, unix ms). Together
// they keep a counter rebuild from racing a delivery.
func keyUnreadVersion(uid uint64) string { return rkey.User(uid, "uver") }
func keyInFlight(uid uint64) string      { return rkey.User(uid, "flying") }

// keyPurgeReset is the set of users whose unread rows a retention purge
// deleted and whose counters still have to be reset.
const keyPurgeReset = keyPrefix + "purge:reset"

// keyReadLate is the set of a user's message ids a read gave up waiting
// for (ReadLate): marked read once they commit.
func keyReadLate(uid uint64) string { return rkey.User(uid, "readlate") }

// keyRepushed holds a user's message ids a retried delivery pushed again
// (scored by when that lapses): a later retry does not push them a third
// time.
func keyRepushed(uid uint64) string { return rkey.User(uid, "repushed") }
