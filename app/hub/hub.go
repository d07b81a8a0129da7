package hub

import "sync"

const hubShards = 64

// Hub indexes this process's clients by user. Safe for concurrent use.
type Hub struct {
	shards [hubShards]shard
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
	defer s.mu.Unlock()
	s.users[c.UID] = append(s.users[c.UID], c)
	return len(s.users[c.UID])
}

// Remove unregisters c and returns how many connections its user still has
// here; removed is false if c was not registered.
func (h *Hub) Remove(c *Client) (left int, removed bool) {
	s := h.shard(c.UID)
	s.mu.Lock()
	defer s.mu.Unlock()
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
	return len(list), removed
}

// Deliver queues frames on every client of uid here and returns how many
// clients took them.
func (h *Hub) Deliver(uid uint64, frames ...Frame) int {
	s := h.shard(uid)
	s.mu.RLock()
	list := s.users[uid]
	var stack [4]*Client
	targets := append(stack[:0], list...)
	s.mu.RUnlock()
	n := 0
	for _, c := range targets {
		if c.Send(frames...) {
			n++
		}
	}
	return n
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

// Each calls fn for every client, one shard at a time, without holding a
// lock while fn runs.
func (h *Hub) Each(fn func(*Client)) { h.EachPart(0, 1, fn) }

// EachPart is Each over part of the hub: the shards i with i%parts ==
// part, so parts goroutines can cover it together.
func (h *Hub) EachPart(part, parts int, fn func(*Client)) {
	for i := part; i < hubShards; i += parts {
		s := &h.shards[i]
		s.mu.RLock()
		var list []*Client
		for _, l := range s.users {
			list = append(list, l...)
		}
		s.mu.RUnlock()
		for _, c := range list {
			fn(c)
		}
	}
}

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
