package cluster

import "strconv"

// Every Redis key this package owns. The registry:
//
//	pd:uconn:{uid}     hash instance → that user's connections there (routing)
//	pd:iconn:{inst}    hash conn id → "uid|role|transport|connected ms"
//	pd:alive:{inst}    exists while the instance runs (TTL aliveTTL)
//	pd:istats:{inst}   hash of an instance's own counts (connections, users)
//	pd:sweep:{inst}    held by the instance cleaning up after a dead one
//	pd:instances       set of registered instances not yet cleaned up
//	pd:online          users with at least one connection anywhere
//
// and the pub/sub channels pd:inst:{inst} (each instance's) and pd:wake.

// KeyUserConns is a hash instance id → number of uid's connections there.
// Exported for scripts that route in the same round trip (package
// delivery's); only this package writes it.
func KeyUserConns(uid uint64) string { return "pd:uconn:" + strconv.FormatUint(uid, 10) }

func keyInstanceChannel(instance string) string { return "pd:inst:" + instance }
func keyInstanceConns(instance string) string   { return "pd:iconn:" + instance }
func keyAlive(instance string) string           { return "pd:alive:" + instance }
func keyInstanceStats(instance string) string   { return "pd:istats:" + instance }
func keySweep(instance string) string           { return "pd:sweep:" + instance }

const (
	keyInstances = "pd:instances"
	keyOnline    = "pd:online"
	// keyWakeChannel carries wakes for the worker loops of every process
	// from processes that enqueue but run no workers (see PublishWake).
	keyWakeChannel = "pd:wake"
)
