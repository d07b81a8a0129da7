package ids

import (
	"sync"
	"testing"
	"time"
)

func TestIDGenUniqueAndIncreasing(t *testing.T) {
	g := NewGen(5)
	const n = 20000
	seen := make(map[uint64]struct{}, n)
	var prev uint64
	for range n {
		id := g.Next()
		if id <= prev {
			t.Fatalf("Next() = %d after %d, want increasing", id, prev)
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("Next() repeated %d", id)
		}
		seen[id] = struct{}{}
		prev = id
	}
}

func TestIDGenConcurrentAndClockBack(t *testing.T) {
	g := NewGen(1)
	now := time.Now()
	g.now = func() time.Time { return now }
	a := g.Next()
	now = now.Add(-time.Second) // the clock steps back
	if b := g.Next(); b <= a {
		t.Fatalf("after clock step back Next() = %d, want > %d", b, a)
	}
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 { // more than 4096 in one frozen ms: borrows the next ms
				id := g.Next()
				mu.Lock()
				if seen[id] {
					t.Errorf("duplicate id %d", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestIDTimeAndParse(t *testing.T) {
	g := NewGen(3)
	before := time.Now().Add(-time.Millisecond)
	id := g.Next()
	if ts := Time(id); ts.Before(before) || ts.After(time.Now().Add(time.Millisecond)) {
		t.Fatalf("Time(%d) = %v, want about now", id, ts)
	}
	if got, ok := Parse(Format(id)); !ok || got != id {
		t.Fatalf("Parse(Format(%d)) = %d %v", id, got, ok)
	}
	for _, bad := range []string{"", "0", "-1", "abc", "1.5", "99999999999999999999"} {
		if _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) ok, want rejected", bad)
		}
	}
}
