// Package batch groups items submitted from many goroutines into batches
// for one flush function.
package batch

import (
	"context"
	"sync"
	"time"
)

// Config sizes a Batcher.
type Config struct {
	// MaxBatch caps the items per flush. Zero means 500.
	MaxBatch int
	// Flushers is how many flushes may run at once. Zero means 4.
	Flushers int
	// Linger holds a batch until its first item has waited this long (or
	// the batch is full), trading that much latency for bigger batches,
	// but only under load: while the batch before it held at least
	// LingerFrom items. Zero hands every batch to the first idle flusher
	// at once.
	Linger     time.Duration
	LingerFrom int
}

// Batcher groups items submitted from many goroutines into batches for one
// flush function. It does not wait to fill a batch: an idle flusher takes
// whatever has queued, so a lone item goes out at once and a burst goes out
// in large batches while earlier flushes run ("smart batching"). Safe for
// concurrent use.
type Batcher[T any] struct {
	cfg   Config
	flush func(context.Context, []T) error
	in    chan batchReq[T]
	work  chan []batchReq[T]
	wg    sync.WaitGroup
	stop  chan struct{}
	once  sync.Once
}

type batchReq[T any] struct {
	items []T
	done  chan error // nil for fire-and-forget
}

// New starts a batcher that calls flush.
func New[T any](cfg Config, flush func(context.Context, []T) error) *Batcher[T] {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.Flushers <= 0 {
		cfg.Flushers = 4
	}
	b := &Batcher[T]{cfg: cfg, flush: flush, in: make(chan batchReq[T], cfg.MaxBatch*4), work: make(chan []batchReq[T]), stop: make(chan struct{})}
	b.wg.Add(1 + cfg.Flushers)
	go b.collect()
	for i := 0; i < cfg.Flushers; i++ {
		go b.flusher()
	}
	return b
}

// Submit queues items and waits until they are flushed (or ctx ends).
// The items go out in one flush, whatever else joins it.
func (b *Batcher[T]) Submit(ctx context.Context, items ...T) error {
	if len(items) == 0 {
		return nil
	}
	done := make(chan error, 1)
	select {
	case b.in <- batchReq[T]{items: items, done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Add queues an item without waiting; the flush error, if any, is only
// visible to flush itself. It never blocks: when the queue is full (the
// store is down or slow) the item is dropped and Add reports false.
func (b *Batcher[T]) Add(item T) bool {
	select {
	case b.in <- batchReq[T]{items: []T{item}}:
		return true
	default:
		return false
	}
}

// Close flushes what is queued and stops.
func (b *Batcher[T]) Close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}

func (b *Batcher[T]) collect() {
	defer b.wg.Done()
	defer close(b.work)
	var batch []batchReq[T]
	size := 0
	var linger *time.Timer
	var lingerC <-chan time.Time
	last := 0 // items in the batch handed off before
	ready := true
	handOff := func() {
		last, batch, size, lingerC = size, nil, 0, nil
		ready = b.cfg.Linger <= 0 || last < b.cfg.LingerFrom
	}
	add := func(r batchReq[T]) {
		if len(batch) == 0 && !ready {
			if linger == nil {
				linger = time.NewTimer(b.cfg.Linger)
			} else {
				linger.Reset(b.cfg.Linger)
			}
			lingerC = linger.C
		}
		batch = append(batch, r)
		if size += len(r.items); size >= b.cfg.MaxBatch {
			b.work <- batch
			handOff()
		}
	}
	for {
		var out chan []batchReq[T]
		if len(batch) > 0 && ready {
			out = b.work
		}
		select {
		case r := <-b.in:
			add(r)
		case <-lingerC:
			ready, lingerC = true, nil
		case out <- batch:
			handOff()
		case <-b.stop:
			for { // drain what is already queued
				select {
				case r := <-b.in:
					add(r) // full batches go at once; a linger timer started here is never waited for
				default:
					if len(batch) > 0 {
						b.work <- batch
					}
					return
				}
			}
		}
	}
}

func (b *Batcher[T]) flusher() {
	defer b.wg.Done()
	for batch := range b.work {
		var items []T
		for _, r := range batch {
			items = append(items, r.items...)
		}
		err := b.flush(context.Background(), items)
		for _, r := range batch {
			if r.done != nil {
				r.done <- err
			}
		}
	}
}

// Retrying wraps a fire-and-forget flush: it retries a failed write three
// times (0.2 s, 0.4 s, 0.8 s apart), then calls failed with the last error
// (to log and count what could not be written) and returns it.
func Retrying[T any](f func(context.Context, []T) error, failed func(rows int, err error)) func(context.Context, []T) error {
	return func(ctx context.Context, rows []T) error {
		var err error
		for attempt := range 4 {
			if attempt > 0 {
				time.Sleep(100 * time.Millisecond << attempt)
			}
			if err = f(ctx, rows); err == nil {
				return nil
			}
		}
		failed(len(rows), err)
		return err
	}
}
