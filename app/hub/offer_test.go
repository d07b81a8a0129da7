package hub

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// directRecorder is a DirectWriter that records which path each frame took
// ("loop" through Write, "direct" through TryWrite, "flush"), and can hold
// the loop's writes, leave a direct write pending, decline as busy or fail.
type directRecorder struct {
	mu         sync.Mutex
	log        []string
	hold       chan struct{} // when set, Write waits on it
	holding    chan struct{} // closed when a Write starts waiting on hold
	tryHold    chan struct{} // when set, TryWrite waits on it
	tryHolding chan struct{} // closed when a TryWrite starts waiting
	pending    bool          // the next TryWrite reports bytes kept
	busy       bool          // TryWrite declines
	fail       error         // TryWrite fails
	closed     bool
	late       int // writes after Close
}

func (r *directRecorder) record(path string, frames []Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.late++
	}
	for _, f := range frames {
		r.log = append(r.log, path+":"+f.ID)
	}
}

// held waits on *hold, once, when it is set: it closes *holding and
// clears *hold first.
func (r *directRecorder) held(hold, holding *chan struct{}) {
	r.mu.Lock()
	h, hing := *hold, *holding
	*hold = nil
	r.mu.Unlock()
	if h != nil {
		close(hing)
		<-h
	}
}

func (r *directRecorder) Write(frames []Frame) error {
	r.held(&r.hold, &r.holding)
	r.record("loop", frames)
	return nil
}

func (r *directRecorder) TryWrite(frames []Frame) (bool, error) {
	r.held(&r.tryHold, &r.tryHolding)
	r.mu.Lock()
	busy, fail, pending := r.busy, r.fail, r.pending
	r.pending = false
	r.mu.Unlock()
	if busy {
		return false, ErrBusy
	}
	if fail != nil {
		return false, fail
	}
	r.record("direct", frames)
	return pending, nil
}

func (r *directRecorder) Flush() error {
	r.held(&r.hold, &r.holding)
	r.record("flush", []Frame{{ID: "-"}})
	return nil
}

func (r *directRecorder) Ping() error { return nil }

func (r *directRecorder) Close(int, string) {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

func (r *directRecorder) entries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// streaming starts c's write loop on rec with the replay over; the loop has
// registered its writer when it returns.
func streaming(t *testing.T, c *Client, rec *directRecorder) chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = c.Run(rec, time.Hour); close(done) }()
	c.EndReplay(nil)
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.direct != nil
	})
	t.Cleanup(func() { c.Close(CloseNormal, ""); <-done })
	return done
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// idle waits until c's write loop holds no write.
func idle(t *testing.T, c *Client) {
	t.Helper()
	waitFor(t, func() bool {
		if !c.wmu.TryLock() {
			return false
		}
		c.wmu.Unlock()
		return true
	})
}

func want(t *testing.T, rec *directRecorder, entries ...string) {
	t.Helper()
	waitFor(t, func() bool { return len(rec.entries()) >= len(entries) })
	if got := rec.entries(); !slices.Equal(got, entries) {
		t.Fatalf("writes = %v, want %v", got, entries)
	}
}

func TestOfferWritesAnIdleClientDirectly(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	rec := &directRecorder{}
	streaming(t, c, rec)
	if !c.Offer(Frame{ID: "1"}, Frame{ID: "2", State: "counts"}) {
		t.Fatal("Offer to a live client reported closed")
	}
	c.Send(Frame{ID: "3"})
	want(t, rec, "direct:1", "direct:2", "loop:3")
	if c.State() != "counts" {
		t.Fatalf("State = %v after a direct write, want the frame's", c.State())
	}
}

// A frame offered while the loop is writing, or while frames wait for it,
// must not overtake them.
func TestOfferQueuesBehindFramesNotYetOut(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	rec := &directRecorder{hold: make(chan struct{}), holding: make(chan struct{})}
	streaming(t, c, rec)
	hold, holding := rec.hold, rec.holding
	c.Send(Frame{ID: "1"})
	<-holding // the loop is inside Write with frame 1
	c.Offer(Frame{ID: "2"})
	c.Send(Frame{ID: "3"})
	c.Offer(Frame{ID: "4"})
	close(hold)
	want(t, rec, "loop:1", "loop:2", "loop:3", "loop:4")
}

func TestOfferDuringReplayIsHeldBehindIt(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	rec := &directRecorder{}
	done := make(chan struct{})
	go func() { _ = c.Run(rec, time.Hour); close(done) }()
	defer func() { c.Close(CloseNormal, ""); <-done }()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.direct != nil })
	c.Offer(Frame{ID: "2", Key: "2:1"})
	c.Offer(Frame{ID: "3", Key: "3:1"})
	c.SendDirect(Frame{ID: "hello"})
	c.Replay([]Frame{{ID: "2", Key: "2:1"}})
	c.EndReplay(map[string]struct{}{"2:1": {}})
	want(t, rec, "loop:hello", "loop:2", "loop:3")
	idle(t, c)
	c.Offer(Frame{ID: "2", Key: "2:1"}) // a late push of a replayed message
	c.Offer(Frame{ID: "5", Key: "5:1"})
	want(t, rec, "loop:hello", "loop:2", "loop:3", "direct:5")
}

// What a direct write leaves is the loop's to send, before anything else.
func TestOfferLeavesWhatTheSocketKeptToTheLoop(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	rec := &directRecorder{pending: true, hold: make(chan struct{}), holding: make(chan struct{})}
	streaming(t, c, rec)
	hold, holding := rec.hold, rec.holding
	c.Offer(Frame{ID: "1"}) // the socket keeps part of it
	<-holding               // the loop is flushing the rest
	c.Offer(Frame{ID: "2"})
	close(hold)
	want(t, rec, "direct:1", "flush:-", "loop:2")
	idle(t, c)
	c.Offer(Frame{ID: "3"})
	want(t, rec, "direct:1", "flush:-", "loop:2", "direct:3")
}

func TestOfferQueuesWhenTheTransportIsBusy(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	rec := &directRecorder{busy: true}
	streaming(t, c, rec)
	if !c.Offer(Frame{ID: "1"}) {
		t.Fatal("Offer to a busy transport reported closed")
	}
	want(t, rec, "loop:1")
}

func TestOfferThatFailsClosesTheClient(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	rec := &directRecorder{fail: errors.New("broken pipe")}
	done := streaming(t, c, rec)
	if c.Offer(Frame{ID: "1"}) {
		t.Fatal("a failed direct write reported success")
	}
	<-done
	if c.Offer(Frame{ID: "2"}) || c.Send(Frame{ID: "3"}) {
		t.Fatal("frames accepted by a closed client")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !rec.closed {
		t.Fatal("transport not closed after the failed write")
	}
}

// Offers racing the client's end never write to a closed transport (the
// WebSocket handler hands the connection back once the loop returns).
func TestOffersRacingCloseNeverWriteAfterIt(t *testing.T) {
	for range 200 {
		c := NewClient(1, "c", "user", "ws")
		rec := &directRecorder{}
		done := make(chan struct{})
		go func() { _ = c.Run(rec, time.Hour); close(done) }()
		c.EndReplay(nil)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					if g == 0 && i == 25 {
						c.Close(CloseNormal, "")
					}
					c.Offer(Frame{ID: "x"})
				}
			})
		}
		wg.Wait()
		<-done
		rec.mu.Lock()
		late := rec.late
		rec.mu.Unlock()
		if late > 0 {
			t.Fatalf("%d writes reached the transport after it was closed", late)
		}
	}
}

// Frames waiting for the loop, or bytes a direct write left, go out before
// anything offered after them: Offer queues behind them. (No loop runs
// here, so what Offer did stays in the queue to look at.)
func TestOfferQueuesWhileFramesOrBytesWait(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(c *Client)
		queue []string
	}{
		{"a frame is queued", func(c *Client) { c.Send(Frame{ID: "1"}) }, []string{"1", "2"}},
		{"bytes wait for a flush", func(c *Client) { c.flushDue = true }, []string{"2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(1, "c", "user", "ws")
			rec := &directRecorder{}
			c.direct = rec
			c.EndReplay(nil)
			tc.setup(c)
			c.Offer(Frame{ID: "2"})
			var queued []string
			for _, f := range c.queue {
				queued = append(queued, f.ID)
			}
			if !slices.Equal(queued, tc.queue) || len(rec.entries()) > 0 {
				t.Fatalf("queue = %v and direct writes %v, want queue %v and none", queued, rec.entries(), tc.queue)
			}
		})
	}
}

// The counts a connection was last told are those of the frames queued
// last, even when an earlier frame is still being written directly.
func TestStateIsTheLastQueuedWhileADirectWriteRuns(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	rec := &directRecorder{tryHold: make(chan struct{}), tryHolding: make(chan struct{})}
	streaming(t, c, rec)
	hold, holding := rec.tryHold, rec.tryHolding
	offered := make(chan bool)
	go func() { offered <- c.Offer(Frame{ID: "1", State: "u1"}) }()
	<-holding // the direct write of frame 1 is under way
	c.Send(Frame{ID: "2", State: "u2"})
	close(hold)
	<-offered
	want(t, rec, "direct:1", "loop:2")
	if c.State() != "u2" {
		t.Fatalf("State = %v, want u2 (frame 2 went out after frame 1)", c.State())
	}
}
