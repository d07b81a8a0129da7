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
