package batch

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBatcherGroupsWhileFlusherBusy(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	release, started := make(chan struct{}), make(chan struct{})
	first := true
	b := New(Config{MaxBatch: 100, Flushers: 1}, func(_ context.Context, items []int) error {
		mu.Lock()
		wait := first
		first = false
		sizes = append(sizes, len(items))
		mu.Unlock()
		if wait {
			close(started)
			<-release
		}
		return nil
	})
	b.Add(0) // occupies the only flusher until release
	<-started
	for i := 1; i < 50; i++ {
		b.Add(i)
	}
	for len(b.in) > 0 { // the collector has taken them all into one batch
		runtime.Gosched()
	}
	close(release)
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 49 {
		t.Fatalf("flush sizes = %v, want [1 49]", sizes)
	}
}

func TestBatcherSubmitReportsFlushError(t *testing.T) {
	b := New(Config{}, func(_ context.Context, items []int) error {
		for _, it := range items {
			if it < 0 {
				return errors.New("negative")
			}
		}
		return nil
	})
	defer b.Close()
	if err := b.Submit(context.Background(), 1, 2); err != nil {
		t.Fatalf("Submit(1, 2) = %v, want nil", err)
	}
	if err := b.Submit(context.Background(), 1, -1); err == nil {
		t.Fatal("Submit with a failing flush = nil, want the error")
	}
}

func TestBatcherCloseFlushesAdds(t *testing.T) {
	var n atomic.Int64
	b := New(Config{MaxBatch: 50}, func(_ context.Context, items []int) error {
		n.Add(int64(len(items)))
		return nil
	})
	for i := range 100 {
		if !b.Add(i) {
			t.Fatalf("Add(%d) dropped with room in the queue", i)
		}
	}
	b.Close()
	if n.Load() != 100 {
		t.Fatalf("flushed %d items, want 100", n.Load())
	}
}

func TestBatcherAddDropsWhenFull(t *testing.T) {
	block, started := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b := New(Config{MaxBatch: 1, Flushers: 1}, func(context.Context, []int) error {
		once.Do(func() { close(started) })
		<-block
		return nil
	})
	defer func() { close(block); b.Close() }()
	b.Add(0)
	<-started
	dropped := false
	for i := range 100 { // the queue holds 4; the collector holds one more
		if !b.Add(i) {
			dropped = true
			break
		}
	}
	if !dropped {
		t.Fatal("Add never reported a full queue while the store was stuck")
	}
}

func TestBatcherSubmitHonoursContext(t *testing.T) {
	block := make(chan struct{})
	b := New(Config{Flushers: 1}, func(context.Context, []int) error { <-block; return nil })
	defer func() { close(block); b.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Submit(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit = %v, want deadline exceeded", err)
	}
}

// Under load (the batch before held LingerFrom items or more) a batch waits
// for its linger or until full; after a quiet spell a lone item goes at
// once. The linger here is an hour, so only fullness can end the wait.
func TestBatcherLingersOnlyUnderLoad(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	b := New(Config{MaxBatch: 10, Flushers: 1, Linger: time.Hour, LingerFrom: 2}, func(_ context.Context, items []int) error {
		mu.Lock()
		sizes = append(sizes, len(items))
		mu.Unlock()
		return nil
	})
	defer b.Close()
	ctx := context.Background()
	if err := b.Submit(ctx, 1); err != nil { // quiet: flushed at once
		t.Fatal(err)
	}
	if err := b.Submit(ctx, 1, 2); err != nil { // the batch before held 1: at once
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Submit(ctx, 3) }() // the batch before held 2: it lingers
	for len(b.in) > 0 {
		runtime.Gosched()
	}
	select {
	case err := <-done:
		t.Fatalf("a batch under load went out before its linger or being full (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := b.Submit(ctx, 4, 5, 6, 7, 8, 9, 10, 11, 12); err != nil { // fills it
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 3 || sizes[0] != 1 || sizes[1] != 2 || sizes[2] != 10 {
		t.Fatalf("flush sizes = %v, want [1 2 10]", sizes)
	}
}
