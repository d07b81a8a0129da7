package app

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBatcherGroupsAndReportsErrors(t *testing.T) {
	var mu sync.Mutex
	var flushed [][]int
	release := make(chan struct{})
	b := NewBatcher(BatcherConfig{MaxBatch: 100, Flushers: 1}, func(_ context.Context, items []int) error {
		<-release
		mu.Lock()
		flushed = append(flushed, append([]int(nil), items...))
		mu.Unlock()
		for _, it := range items {
			if it < 0 {
				return errors.New("negative")
			}
		}
		return nil
	})
	defer b.Close()
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = b.Submit(context.Background(), i) }()
	}
	time.Sleep(50 * time.Millisecond) // let them queue behind the blocked first flush
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Submit(%d) = %v, want nil", i, err)
		}
	}
	mu.Lock()
	if len(flushed) >= 50 {
		t.Fatalf("%d flushes for 50 items, want them batched", len(flushed))
	}
	mu.Unlock()
	if err := b.Submit(context.Background(), 1, -1); err == nil {
		t.Fatal("Submit with a failing flush = nil, want the error")
	}
}

func TestBatcherCloseFlushesAdds(t *testing.T) {
	var n atomic.Int64
	b := NewBatcher(BatcherConfig{MaxBatch: 7}, func(_ context.Context, items []int) error {
		n.Add(int64(len(items)))
		return nil
	})
	for i := range 100 {
		b.Add(i)
	}
	b.Close()
	if n.Load() != 100 {
		t.Fatalf("flushed %d items, want 100", n.Load())
	}
}

func TestBatcherSubmitHonoursContext(t *testing.T) {
	block := make(chan struct{})
	b := NewBatcher(BatcherConfig{Flushers: 1}, func(context.Context, []int) error { <-block; return nil })
	defer func() { close(block); b.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Submit(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit = %v, want deadline exceeded", err)
	}
}
