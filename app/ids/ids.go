package ids

import (
	"strconv"
	"sync"
	"time"
)

// Epoch is the zero of the id clock (2025-01-01T00:00:00Z, in ms).
const Epoch = 1735689600000

// TimeShift places an id's milliseconds above its node and sequence bits.
const TimeShift = 22

// Gen makes 63-bit ids: 41 bits of milliseconds since Epoch, 10 bits of
// node and 12 bits of sequence, so ids from one node are strictly increasing
// and ids from all nodes are roughly time-ordered. A node number is taken
// from a Redis counter at start so instances do not collide. Safe for
// concurrent use.
type Gen struct {
	mu   sync.Mutex
	node uint64
	last uint64 // last ms used
	seq  uint64
	now  func() time.Time
}

// NewGen returns a generator for node (only its low 10 bits are used).
func NewGen(node uint64) *Gen {
	return &Gen{node: node & 0x3ff, now: time.Now}
}

// Next returns a new id.
func (g *Gen) Next() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := uint64(g.now().UnixMilli() - Epoch)
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
	return g.last<<TimeShift | g.node<<12 | g.seq
}

// SetNode switches the generator to node (its low 10 bits). Ids stay
// increasing: the time and sequence carry on.
func (g *Gen) SetNode(node uint64) {
	g.mu.Lock()
	g.node = node & 0x3ff
	g.mu.Unlock()
}

// Time returns the time encoded in id.
func Time(id uint64) time.Time {
	return time.UnixMilli(int64(id>>TimeShift) + Epoch)
}

// Format renders an id as the contract's string form.
func Format(id uint64) string { return strconv.FormatUint(id, 10) }

// Parse parses a string id; ok is false for anything that is not one.
func Parse(s string) (uint64, bool) {
	id, err := strconv.ParseUint(s, 10, 63)
	return id, err == nil && id > 0
}
