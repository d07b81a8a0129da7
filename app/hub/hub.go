package hub

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

const hubShards = 64

// Hub indexes this process's clients by user, and keeps them in the order
// they connected for walks over all of them. Safe for concurrent use.
type Hub struct {
	shards [hubShards]shard
	order  order
}

// order lists clients in the order they connected. A walk in this order
// (a broadcast) visits memory roughly in the order it was allocated, the
// Go side of each connection and the kernel's socket alike: in alternating
// runs of a 15,000-connection broadcast it took about 7% less server CPU
// than a walk in map order. Each client gets a sequence number; a walk
// goes by sequence in batches, so it neither skips nor repeats a client
// when the list is compacted under it, and holds the lock only to copy a
// batch.
type order struct {
	mu   sync.Mutex
	next int64
	list []entry // by seq; c is nil where the client left, until compaction
	live int
}

type entry struct {
	seq int64
	c   *Client
}

func (o *order) add(c *Client) {
	o.mu.Lock()
	if c.pos < len(o.list) && o.list[c.pos].c == c {
		o.mu.Unlock()
		return // listed already: a second Add must not list it twice
	}
	o.next++
	c.pos = len(o.list)
	o.list = append(o.list, entry{seq: o.next, c: c})
	o.live++
	o.mu.Unlock()
}

func (o *order) remove(c *Client) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c.pos >= len(o.list) || o.list[c.pos].c != c {
		return // not listed (cannot happen while Add and Remove pair up)
	}
	o.list[c.pos].c = nil
	o.live--
	if len(o.list) < 64 || o.live > len(o.list)/2 {
		return
	}
	// Half the slots are holes: close them up, keeping the order.
	kept := o.list[:0]
	for _, e := range o.list {
		if e.c != nil {
			e.c.pos = len(kept)
			kept = append(kept, e)
		}
	}
	clear(o.list[len(kept):])
	o.list = kept
	if cap(o.list) > 4*len(o.list)+1024 { // after a mass disconnect
		o.list = append([]entry(nil), o.list...)
	}
}

// Span is a run of clients in connection order: sequence numbers from
// From up to, not including, To.
type Span struct{ From, To int64 }

// Spans splits the clients connected now into n spans of about equal
// size, for n goroutines to walk with EachIn. The last span is open, so
// clients that connect meanwhile fall in it.
func (h *Hub) Spans(n int) []Span {
	o := &h.order
	o.mu.Lock()
	defer o.mu.Unlock()
	spans := make([]Span, n)
	for i := range spans {
		if i > 0 {
			spans[i].From = spans[i-1].To
		}
		spans[i].To = math.MaxInt64
		if j := len(o.list) * (i + 1) / n; i < n-1 && j < len(o.list) {
			spans[i].To = o.list[j].seq
		}
	}
	return spans
}

// walkBatch is how many clients a walk copies per hold of the lock.
const walkBatch = 256

// EachIn calls fn for every client in sp, in the order they connected,
// without holding a lock while fn runs. A client that connects or leaves
// during the walk may or may not be seen; no client is seen twice.
func (h *Hub) EachIn(sp Span, fn func(*Client)) {
	o := &h.order
	var batch [walkBatch]*Client
	for from := sp.From; from < sp.To; {
		n := 0
		o.mu.Lock()
		i, _ := slices.BinarySearchFunc(o.list, from, func(e entry, seq int64) int { return cmp.Compare(e.seq, seq) })
		from = sp.To // unless the batch fills first
		for ; i < len(o.list) && o.list[i].seq < sp.To; i++ {
			if n == walkBatch {
				from = o.list[i].seq
				break
			}
			if c := o.list[i].c; c != nil {
				batch[n] = c
				n++
			}
		}
		o.mu.Unlock()
		for _, c := range batch[:n] {
			fn(c)
		}
		clear(batch[:n])
	}
}

type shard struct {
	mu    sync.RWMutex
	users map[uint64][]*Client
}

// New returns an empty hub.
func New() *Hub {
	h := &Hub{}
	for i := range h.shards {
		h.shards[i].users = make(map[uint64][]*Client)
	}
	return h
}

func (h *Hub) shard(uid uint64) *shard { return &h.shards[uid%hubShards] }

// Add registers c and returns how many connections its user now has here.
func (h *Hub) Add(c *Client) int {
	s := h.shard(c.UID)
	s.mu.Lock()
	s.users[c.UID] = append(s.users[c.UID], c)
	n := len(s.users[c.UID])
	h.order.add(c) // under the shard's lock, so a Remove of c comes after
	s.mu.Unlock()
	return n
}

// Remove unregisters c and returns how many connections its user still has
// here; removed is false if c was not registered.
func (h *Hub) Remove(c *Client) (left int, removed bool) {
	s := h.shard(c.UID)
	s.mu.Lock()
	list := s.users[c.UID]
	for i, x := range list {
		if x == c {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			removed = true
			break
		}
	}
	if len(list) == 0 {
		delete(s.users, c.UID)
	} else {
		s.users[c.UID] = list
	}
	if removed {
		h.order.remove(c)
	}
	s.mu.Unlock()
	return len(list), removed
}

// Stats returns the number of connections and of distinct users here.
func (h *Hub) Stats() (conns, users int) {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		users += len(s.users)
		for _, l := range s.users {
			conns += len(l)
		}
		s.mu.RUnlock()
	}
	return conns, users
}

// Each calls fn for every client, in the order they connected, without
// holding a lock while fn runs.
func (h *Hub) Each(fn func(*Client)) { h.EachIn(Span{0, math.MaxInt64}, fn) }

// Has reports whether the connection connID of uid is registered here.
func (h *Hub) Has(uid uint64, connID string) bool {
	s := h.shard(uid)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.users[uid] {
		if c.ConnID == connID {
			return true
		}
	}
	return false
}

// EachOf calls fn for every client of uid here.
func (h *Hub) EachOf(uid uint64, fn func(*Client)) {
	s := h.shard(uid)
	s.mu.RLock()
	list := append([]*Client(nil), s.users[uid]...)
	s.mu.RUnlock()
	for _, c := range list {
		fn(c)
	}
}
