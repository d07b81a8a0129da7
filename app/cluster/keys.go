package cluster

import "github.com/pushdesk/pushdesk/internal/rkey"

// Every Redis key this package owns. The registry:
//
//	pd:{u<uid>}:uconn    hash instance → that user's connections there (routing)
//	pd:{i<inst>}:iconn   hash conn id → "uid|role|transport|connected ms"
//	pd:{i<inst>}:alive   exists while the instance runs (TTL aliveTTL)
//	pd:{i<inst>}:istats  hash of an instance's own counts (connections, users)
//	pd:{i<inst>}:sweep   held by the instance cleaning up after a dead one
//	pd:instances         set of registered instances not yet cleaned up
//	pd:online            users with at least one connection anywhere
//
// and the pub/sub channels pd:inst:<inst> (each instance's) and pd:wake,
// sharded channels on a cluster (see Sharded). A user's and an instance's
// keys carry their hash tags (package rkey); on a cluster, what touches a
// user, an instance and pd:online is done as one script per slot (see
// registry.go).

// KeyUserConns is a hash instance id → number of uid's connections there.
// Exported for scripts that route in the same round trip (package
// delivery's); only this package writes it.
func KeyUserConns(uid uint64) string { return rkey.User(uid, "uconn") }

func keyInstanceChannel(instance string) string { return "pd:inst:" + instance }
func keyInstanceConns(instance string) string   { return rkey.Instance(instance, "iconn") }
func keyAlive(instance string) string           { return rkey.Instance(instance, "alive") }
func keyInstanceStats(instance string) string   { return rkey.Instance(instance, "istats") }
func keySweep(instance string) string           { return rkey.Instance(instance, "sweep") }

const (
	keyInstances = "pd:instances"
	keyOnline    = "pd:online"
	// keyWakeChannel carries wakes for the worker loops of every process
	// from processes that enqueue but run no workers (see PublishWake).
	keyWakeChannel = "pd:wake"
)
