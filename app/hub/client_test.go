package hub

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type recorder struct {
	mu     sync.Mutex
	frames []Frame
	closed int
}

func (r *recorder) Write(f []Frame) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, f...)
	return nil
}
func (r *recorder) Ping() error              { return nil }
func (r *recorder) Close(code int, _ string) { r.mu.Lock(); r.closed = code; r.mu.Unlock() }

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range r.frames {
		out = append(out, f.Type+":"+f.ID)
	}
	return out
}

func TestReplayHoldsLiveFramesAndDedupes(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	rec := &recorder{}
	done := make(chan struct{})
	go func() { _ = c.Run(rec, time.Hour); close(done) }()

	c.Send(Frame{Type: "msg", ID: "2", Key: "2:1"}) // live, during replay: held
	c.Send(Frame{Type: "msg", ID: "3", Key: "3:1"})
	c.SendDirect(Frame{Type: "hello"})
	c.Replay([]Frame{{Type: "msg", ID: "1", Key: "1:1"}, {Type: "msg", ID: "2", Key: "2:1"}})
	c.EndReplay(map[string]struct{}{"1:1": {}, "2:1": {}})
	c.Send(Frame{Type: "msg", ID: "1", Key: "1:1"}) // late push of a replayed message: dropped
	c.Send(Frame{Type: "msg", ID: "1", Key: "1:2"}) // a new version of it: kept
	c.Close(CloseNormal, "")
	<-done
	got := rec.ids()
	want := []string{"hello:", "msg:1", "msg:2", "msg:3", "msg:1"}
	if len(got) != len(want) {
		t.Fatalf("frames = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frames = %v, want %v", got, want)
		}
	}
	if rec.closed != CloseNormal {
		t.Fatalf("close code = %d, want %d", rec.closed, CloseNormal)
	}
}

// bigFrame is a msg frame the size of one with a 16 KiB body.
func bigFrame() Frame { return Frame{Type: "msg", Data: make([]byte, 16<<10)} }

// perLimit is how many frames of f fit in limit bytes.
func perLimit(f Frame, limit int) int { return limit / (len(f.Data) + FrameOverhead) }

// The slow-consumer limit counts bytes, not frames: with 16 KiB bodies a
// peer that stopped reading once held 4,096 of them (64 MiB).
func TestSlowConsumerIsClosedByBytes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame Frame
	}{
		{"16 KiB frames", bigFrame()},
		{"tiny frames", Frame{Type: "unread", Data: []byte(`{"type":"unread","total":1}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(1, "c", "user", "ws")
			c.EndReplay(nil)
			n := perLimit(tc.frame, MaxQueuedBytes)
			for i := range n {
				if !c.Send(tc.frame) {
					t.Fatalf("Send %d of %d refused before the limit", i, n)
				}
			}
			if c.Send(tc.frame) {
				t.Fatalf("Send %d accepted, over %d bytes queued; want the client closed", n+1, MaxQueuedBytes)
			}
			select {
			case <-c.Done():
			default:
				t.Fatal("client not closed after overflow")
			}
		})
	}
}

// Live frames held during a replay may take half the limit.
func TestSlowConsumerDuringReplay(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	n := perLimit(bigFrame(), MaxQueuedBytes/2)
	for i := range n {
		if !c.Send(bigFrame()) {
			t.Fatalf("held Send %d of %d refused", i, n)
		}
	}
	if c.Send(bigFrame()) {
		t.Fatal("held frames over half the limit accepted")
	}
}

// stalledWriter blocks its first Write until released, like a peer that
// stopped reading (until the write deadline).
type stalledWriter struct {
	recorder
	started, release chan struct{}
	once             sync.Once
}

func (w *stalledWriter) Write(f []Frame) error {
	w.once.Do(func() { close(w.started); <-w.release })
	return w.recorder.Write(f)
}

// A batch the writer is stuck on still counts: the queue behind it gets
// only what is left, and once it is out the room comes back.
func TestBatchBeingWrittenCounts(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	c.EndReplay(nil)
	w := &stalledWriter{started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() { _ = c.Run(w, time.Hour); close(done) }()
	n := perLimit(bigFrame(), MaxQueuedBytes)
	for range n / 2 {
		c.Send(bigFrame())
	}
	<-w.started // the writer holds half the limit's frames
	for i := range n - n/2 {
		if !c.Send(bigFrame()) {
			t.Fatalf("Send %d behind the stalled batch refused before the limit", i)
		}
	}
	if c.Send(bigFrame()) {
		t.Fatal("Send over the limit (counting the batch being written) accepted")
	}
	close(w.release)
	<-done

	c = NewClient(1, "c", "user", "ws")
	c.EndReplay(nil)
	w = &stalledWriter{started: make(chan struct{}), release: make(chan struct{})}
	done = make(chan struct{})
	go func() { _ = c.Run(w, time.Hour); close(done) }()
	for range n {
		c.Send(bigFrame())
	}
	<-w.started
	close(w.release)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		w.mu.Lock()
		out := len(w.frames)
		w.mu.Unlock()
		if out == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d frames written", out, n)
		}
	}
	for i := range n {
		if !c.Send(bigFrame()) {
			t.Fatalf("Send %d after the queue drained refused", i)
		}
	}
	c.Close(CloseNormal, "")
	<-done
}

func TestHubAddRemoveDeliver(t *testing.T) {
	h := New()
	a, b := NewClient(7, "a", "user", "ws"), NewClient(7, "b", "user", "sse")
	a.EndReplay(nil)
	b.EndReplay(nil)
	if n := h.Add(a); n != 1 {
		t.Fatalf("Add = %d, want 1", n)
	}
	h.Add(b)
	if n := h.Deliver(7, Frame{Type: "msg"}); n != 2 {
		t.Fatalf("Deliver = %d, want 2", n)
	}
	if conns, users := h.Stats(); conns != 2 || users != 1 {
		t.Fatalf("Stats = %d, %d, want 2, 1", conns, users)
	}
	if left, ok := h.Remove(a); !ok || left != 1 {
		t.Fatalf("Remove = %d %v, want 1 true", left, ok)
	}
	if _, ok := h.Remove(a); ok {
		t.Fatal("second Remove reported removed")
	}
	h.Remove(b)
	if n := h.Deliver(7, Frame{Type: "msg"}); n != 0 {
		t.Fatalf("Deliver after removal = %d, want 0", n)
	}
}

// Calls while a run is under way make it run once more, not once each;
// a call once it is idle runs again.
func TestCoalesceRunsOnceMoreAtMost(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	var runs atomic.Int32
	started, release, ran := make(chan struct{}, 8), make(chan struct{}), make(chan struct{}, 8)
	fn := func() {
		runs.Add(1)
		started <- struct{}{}
		<-release
		ran <- struct{}{}
	}
	c.Coalesce(fn)
	<-started
	for range 1000 {
		c.Coalesce(fn)
	}
	release <- struct{}{} // the first run ends; the repeat starts
	<-ran
	<-started
	release <- struct{}{}
	<-ran
	time.Sleep(10 * time.Millisecond)
	if n := runs.Load(); n != 2 {
		t.Fatalf("runs = %d after 1,001 calls, want 2", n)
	}
	c.Coalesce(fn)
	<-started
	release <- struct{}{}
	<-ran
	if n := runs.Load(); n != 3 {
		t.Fatalf("runs = %d after a call once idle, want 3", n)
	}
}
