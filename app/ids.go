package app

import (
	"strconv"
	"sync"
	"time"
)

// idEpoch is the zero of the id clock (2025-01-01T00:00:00Z, in ms).
const idEpoch = 1735689600000

// idTimeShift places an id's milliseconds above its node and sequence bits.
const idTimeShift = 22

// IDGen makes 63-bit ids: 41 bits of milliseconds since idEpoch, 10 bits of
// node and 12 bits of sequence, so ids from one node are strictly increasing
// and ids from all nodes are roughly time-ordered. A node number is taken
// from a Redis counter at start so instances do not collide. Safe for
// concurrent use.
type IDGen struct {
	mu   sync.Mutex
	node uint64
	last uint64 // last ms used
	seq  uint64
	now  func() time.Time
}

// NewIDGen returns a generator for node (only its low 10 bits are used).
func NewIDGen(node uint64) *IDGen {
	return &IDGen{node: node & 0x3ff, now: time.Now}
}

// Next returns a new id.
func (g *IDGen) Next() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := uint64(g.now().UnixMilli() - idEpoch)
	if ms < g.last { // clock went back: keep counting on the last ms
		ms = g.last
	}
	if ms == g.last {
		g.seq++
		if g.seq > 0xfff { // sequence exhausted in this ms: borrow the next one
			g.last++
			g.seq = 0
		}
	} else {
		g.last = ms
		g.seq = 0
	}
	return g.last<<idTimeShift | g.node<<12 | g.seq
}

// SetNode switches the generator to node (its low 10 bits). Ids stay
// increasing: the time and sequence carry on.
func (g *IDGen) SetNode(node uint64) {
	g.mu.Lock()
	g.node = node & 0x3ff
	g.mu.Unlock()
}

// IDTime returns the time encoded in id.
func IDTime(id uint64) time.Time {
	return time.UnixMilli(int64(id>>idTimeShift) + idEpoch)
}

// FormatID renders an id as the contract's string form.
func FormatID(id uint64) string { return strconv.FormatUint(id, 10) }

// ParseID parses a string id; ok is false for anything that is not one.
func ParseID(s string) (uint64, bool) {
	id, err := strconv.ParseUint(s, 10, 63)
	return id, err == nil && id > 0
}
