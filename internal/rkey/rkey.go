// Package rkey is the hash-tag layout of Pushdesk's Redis keys, which
// lets them live on a Redis Cluster: a key's cluster slot is the CRC16 of
// the part inside its first {…}, so keys with one tag share a slot and a
// Lua script may touch them together.
//
//   - per user: pd:{u<uid>}:<name> (counters, in-flight marks, routing,
//     broadcast caches, last seen): every script about one user stays in
//     one slot;
//   - per instance: pd:{i<instance>}:<name> (its connections, alive key,
//     stats);
//   - the chat's keys share pd:{chat}: (package chat); asynq tags its
//     own keys per queue (its layout, not ours: jobs/wake.go is the one
//     place that names them, docs/architecture.md "The one exception").
//
// Keys of more than one user or instance are never in one script on a
// cluster: Runs splits a batch by slot. On a single Redis every key is in
// one place and nothing is split. The packages still name their own keys
// (each keys.go); this package only gives them the tag.
package rkey

import "strconv"

// User is uid's key name, pd:{u<uid>}:name.
func User(uid uint64, name string) string {
	return "pd:{u" + strconv.FormatUint(uid, 10) + "}:" + name
}

// Instance is instance's key name, pd:{i<instance>}:name.
func Instance(instance, name string) string { return "pd:{i" + instance + "}:" + name }

// Slots is the number of Redis Cluster hash slots.
const Slots = 16384

// Slot is key's Redis Cluster hash slot: CRC16 (XMODEM) of its hash tag
// (the part between the first '{' and the next '}', when not empty) or of
// the whole key, modulo Slots.
func Slot(key string) uint16 {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j > i+1 {
					key = key[i+1 : j]
				}
				return crc16(key) % Slots
			}
		}
		break
	}
	return crc16(key) % Slots
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Runs splits items 0..n-1 into runs of at most max for one script call
// each, keeping their order within a run. With cluster, a run holds only
// items whose key (key(i)) is in one slot; without, runs are consecutive
// chunks, as many items per call as max allows.
func Runs(n, max int, cluster bool, key func(i int) string) [][]int {
	var runs [][]int
	if !cluster {
		for lo := 0; lo < n; lo += max {
			run := make([]int, 0, min(max, n-lo))
			for i := lo; i < min(lo+max, n); i++ {
				run = append(run, i)
			}
			runs = append(runs, run)
		}
		return runs
	}
	open := make(map[uint16]int) // slot → its run being filled
	for i := range n {
		s := Slot(key(i))
		r, ok := open[s]
		if !ok || len(runs[r]) == max {
			r = len(runs)
			open[s] = r
			runs = append(runs, nil)
		}
		runs[r] = append(runs[r], i)
	}
	return runs
}
