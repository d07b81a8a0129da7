package hub

import (
	"sync"
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

func TestSlowConsumerIsClosed(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	c.EndReplay(nil)
	for i := 0; i < maxQueuedFrames; i++ {
		if !c.Send(Frame{Type: "x"}) {
			t.Fatalf("Send %d refused before the limit", i)
		}
	}
	if c.Send(Frame{Type: "x"}) {
		t.Fatal("Send over the limit accepted, want the client closed")
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("client not closed after overflow")
	}
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
	if n := h.Deliver(7, false, Frame{Type: "msg"}); n != 2 {
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
	if n := h.Deliver(7, false, Frame{Type: "msg"}); n != 0 {
		t.Fatalf("Deliver after removal = %d, want 0", n)
	}
}

// direct is a DirectWriter whose socket can be made full (TryWrite takes
// nothing) or short (TryWrite takes the frames but leaves a rest to flush).
type direct struct {
	recorder
	full, short bool
	inline      []string // ids written by TryWrite
	flushes     int
}

func (d *direct) TryWrite(fs []Frame) (ok, flush bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.full {
		return false, false, nil
	}
	for _, f := range fs {
		d.inline = append(d.inline, f.ID)
		d.frames = append(d.frames, f)
	}
	return true, d.short, nil
}

func (d *direct) Flush() error { d.mu.Lock(); d.flushes++; d.mu.Unlock(); return nil }

func TestSendInlineWritesIdleClientsAndKeepsOrder(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	d := &direct{}
	done := make(chan struct{})
	go func() { _ = c.Run(d, time.Hour); close(done) }()

	// During replay nothing is written inline: live frames wait.
	c.SendInline(Frame{Type: "msg", ID: "1", Key: "1:1"})
	c.EndReplay(nil)
	waitFor(t, func() bool { return len(d.ids()) == 1 })
	if len(d.inline) != 0 {
		t.Fatalf("a frame held during replay was written inline: %v", d.inline)
	}
	// Idle: written on the caller's goroutine.
	c.SendInline(Frame{Type: "msg", ID: "2"})
	if got := d.ids(); len(got) != 2 || len(d.inline) != 1 {
		t.Fatalf("idle client: frames %v, inline %v", got, d.inline)
	}
	// A full socket: queued, and what is sent after it keeps its place.
	d.mu.Lock()
	d.full = true
	d.mu.Unlock()
	c.SendInline(Frame{Type: "msg", ID: "3"})
	c.Send(Frame{Type: "msg", ID: "4"})
	waitFor(t, func() bool { return len(d.ids()) == 4 })
	// A short write: the rest is flushed before the next batch.
	d.mu.Lock()
	d.full, d.short = false, true
	d.mu.Unlock()
	c.SendInline(Frame{Type: "msg", ID: "5"})
	waitFor(t, func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.flushes == 1 })
	c.Close(CloseNormal, "")
	<-done
	want := []string{"msg:1", "msg:2", "msg:3", "msg:4", "msg:5"}
	if got := d.ids(); !equal(got, want) {
		t.Fatalf("frames = %v, want %v", got, want)
	}
}

func TestSendInlineDropsReplayedAndRefusesClosed(t *testing.T) {
	c := NewClient(1, "c", "user", "ws")
	d := &direct{}
	done := make(chan struct{})
	go func() { _ = c.Run(d, time.Hour); close(done) }()
	c.Replay([]Frame{{Type: "msg", ID: "1", Key: "1:1"}})
	c.EndReplay(map[string]struct{}{"1:1": {}})
	waitFor(t, func() bool { return len(d.ids()) == 1 })
	c.SendInline(Frame{Type: "msg", ID: "1", Key: "1:1"}) // a late push of the replayed one
	if len(d.inline) != 0 {
		t.Fatalf("a replayed frame went out again: %v", d.inline)
	}
	c.Close(CloseNormal, "")
	<-done
	if c.SendInline(Frame{Type: "msg", ID: "2"}) {
		t.Fatal("SendInline on a closed client reported success")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
