package broadcast

import (
	"strconv"

	"github.com/pushdesk/pushdesk/internal/rkey"
)

// Every Redis key this package owns. A user's keys carry the user's hash
// tag (rkey.User): fill_state.lua touches two of them in one slot. A
// recurring broadcast's claims carry its template's: claim_occurrence.lua
// touches a tick's and a run's.

// KeyGen moves whenever a broadcast is sent, so cached per-user broadcast
// counts know they are stale. Exported, with KeyUnread and FieldGen, for
// package delivery's script, which reads them in its round trip; only this
// package writes them.
const KeyGen = "pd:bgen"

// FieldGen is the generation a user's cached broadcast counts reflect.
const FieldGen = "~gen"

// KeyUnread caches a user's unread broadcasts per kind (and FieldGen).
func KeyUnread(uid uint64) string { return rkey.User(uid, "bunr") }

// keyBroadcastMark is the time (ms) before which broadcasts count as read
// for the user: the end of their previous session, or their last read-all.
func keyBroadcastMark(uid uint64) string { return rkey.User(uid, "bmark") }

// keySegments caches a user's API-set segments ("~" marks a loaded set).
func keySegments(uid uint64) string { return rkey.User(uid, "useg") }

// keyTokenGroups holds the groups of the user's latest token.
func keyTokenGroups(uid uint64) string { return rkey.User(uid, "ujwt") }

// keyBroadcastDedupe holds a broadcast id for 15 minutes under its key.
func keyBroadcastDedupe(k string) string { return "pd:bdup:" + k }

// keyFanoutLock is held while a broadcast is being fanned out;
// keyFanoutDone lists the instances it has reached (the checkpoint).
func keyFanoutLock(id uint64) string { return "pd:bfan:lock:" + strconv.FormatUint(id, 10) }
func keyFanoutDone(id uint64) string { return "pd:bfan:done:" + strconv.FormatUint(id, 10) }

// keyBroadcastFirst is the user's first broadcast mark (ms): broadcasts
// older than the user's first visit are not in their history.
func keyBroadcastFirst(uid uint64) string { return rkey.User(uid, "bfirst") }

// keyOccurrence claims one tick (unix minute) of a recurring broadcast.
func keyOccurrence(tmpl uint64, tick int64) string {
	return "pd:{bt" + strconv.FormatUint(tmpl, 10) + "}:occ:" + strconv.FormatInt(tick, 10)
}

// keyOccurrenceRun remembers the occurrence one recurring run (an asynq
// task id) of template tmpl made, for its retries.
func keyOccurrenceRun(tmpl uint64, run string) string {
	return "pd:{bt" + strconv.FormatUint(tmpl, 10) + "}:occrun:" + run
}

// keyBroadcastState is bumped whenever a user's segments, token groups,
// broadcast mark or broadcast reads change, so caches filled from a read
// that came before the change are not stored.
func keyBroadcastState(uid uint64) string { return rkey.User(uid, "bver") }
