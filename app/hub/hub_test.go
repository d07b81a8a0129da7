package hub

import (
	"fmt"
	"math"
	"sync"
	"testing"
)

func addClients(h *Hub, n int) []*Client {
	cs := make([]*Client, n)
	for i := range cs {
		cs[i] = NewClient(uint64(i%700+1), fmt.Sprint("c", i), "user", "ws")
		h.Add(cs[i])
	}
	return cs
}

// walk returns how often each client was seen by Each.
func walk(h *Hub) (seen map[*Client]int, order []*Client) {
	seen = map[*Client]int{}
	h.Each(func(c *Client) { seen[c]++; order = append(order, c) })
	return seen, order
}

func TestEachGoesInConnectionOrderAfterRemovals(t *testing.T) {
	h := New()
	cs := addClients(h, 5000)
	// Remove two in three, enough to compact the list more than once.
	var kept []*Client
	for i, c := range cs {
		if i%3 == 0 {
			kept = append(kept, c)
			continue
		}
		if _, removed := h.Remove(c); !removed {
			t.Fatalf("client %d was not registered", i)
		}
	}
	if _, removed := h.Remove(cs[1]); removed {
		t.Fatal("a second Remove removed again")
	}
	// Removed clients are gone from per-user lookups too.
	for _, c := range cs[1:3] {
		if h.Has(c.UID, c.ConnID) {
			t.Fatalf("%s still registered", c.ConnID)
		}
	}
	later := addClients(h, 10)
	kept = append(kept, later...)
	_, order := walk(h)
	if len(order) != len(kept) {
		t.Fatalf("walked %d clients, want %d", len(order), len(kept))
	}
	for i := range kept {
		if order[i] != kept[i] {
			t.Fatalf("client %d of the walk is not the %dth to connect of those left", i, i)
		}
	}
	if conns, _ := h.Stats(); conns != len(kept) {
		t.Fatalf("Stats counts %d connections, want %d", conns, len(kept))
	}
}

// A walk that runs while most clients leave (so the list is compacted
// under it) and others join sees every client that stayed exactly once.
func TestEachInSurvivesCompactionMidWalk(t *testing.T) {
	h := New()
	cs := addClients(h, 3000)
	seen := map[*Client]int{}
	first := true
	h.EachIn(Span{0, math.MaxInt64}, func(c *Client) {
		seen[c]++
		if first {
			first = false
			for i, x := range cs {
				if i%4 != 0 && x != c {
					h.Remove(x)
				}
			}
			addClients(h, 100)
		}
	})
	for i, c := range cs {
		if (i%4 == 0 || i == 0) && seen[c] != 1 {
			t.Fatalf("client %d, connected throughout, seen %d times", i, seen[c])
		}
	}
	for c, n := range seen {
		if n != 1 {
			t.Fatalf("%s seen %d times", c.ConnID, n)
		}
	}
}

// Spans cut the clients into contiguous runs of about equal size that
// together cover each client once; a client that joins later falls in the
// last span.
func TestSpansCoverEveryClientOnce(t *testing.T) {
	h := New()
	addClients(h, 1001)
	spans := h.Spans(3)
	late := addClients(h, 1)[0]
	seen := map[*Client]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sizes := make([]int, len(spans))
	for i, sp := range spans {
		if i > 0 && sp.From != spans[i-1].To {
			t.Fatalf("span %d starts at %d, the one before ends at %d", i, sp.From, spans[i-1].To)
		}
		wg.Go(func() {
			h.EachIn(sp, func(c *Client) {
				mu.Lock()
				seen[c]++
				sizes[i]++
				mu.Unlock()
			})
		})
	}
	wg.Wait()
	if len(seen) != 1002 {
		t.Fatalf("spans covered %d clients, want 1002", len(seen))
	}
	for c, n := range seen {
		if n != 1 {
			t.Fatalf("%s seen %d times", c.ConnID, n)
		}
	}
	for i, n := range sizes[:2] {
		if n < 300 || n > 370 {
			t.Fatalf("span %d holds %d of 1001 clients", i, n)
		}
	}
	h.EachIn(spans[2], func(c *Client) {
		if c == late {
			late = nil
		}
	})
	if late != nil {
		t.Fatal("a client that joined after Spans is in no span")
	}
	if got := New().Spans(2); len(got) != 2 {
		t.Fatalf("Spans of an empty hub = %v", got)
	}
}

// A client added twice is walked once, and gone after its removals.
func TestDoubleAddIsListedOnce(t *testing.T) {
	h := New()
	c := NewClient(7, "c", "user", "ws")
	h.Add(c)
	h.Add(c)
	if seen, _ := walk(h); seen[c] != 1 {
		t.Fatalf("walk saw the client %d times", seen[c])
	}
	h.Remove(c)
	h.Remove(c)
	if seen, order := walk(h); len(order) != 0 {
		t.Fatalf("walk after both removals saw %v", seen)
	}
	if conns, _ := h.Stats(); conns != 0 {
		t.Fatalf("Stats after both removals: %d connections", conns)
	}
}
