package chat

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
)

// These tests break one dependency at a time on real servers and check
// that what Redis says (the live truth) and what clients were told still
// agree, or are made to agree by the loop.

// failingPusher fails the next fails pushes to uid (the rest are
// recorded).
type failingPusher struct {
	*recorder
	mu    sync.Mutex
	uid   uint64
	fails int
}

func (p *failingPusher) PushToUser(ctx context.Context, uid uint64, frames ...hub.Frame) error {
	p.mu.Lock()
	fail := uid == p.uid && p.fails > 0
	if fail {
		p.fails--
	}
	p.mu.Unlock()
	if fail {
		return fmt.Errorf("publish: %w", context.DeadlineExceeded)
	}
	return p.recorder.PushToUser(ctx, uid, frames...)
}

// newServiceWith is newTestService (its key prefix, clock and recorder)
// with the dependencies change replaces.
func newServiceWith(tb testing.TB, cfg Config, change func(*Params)) (*Service, *recorder) {
	tb.Helper()
	base, rec, clock := newTestService(tb, cfg)
	p := Params{Config: base.cfg, Redis: testRC, Repo: testRepo, Push: rec, Inbox: rec, Presence: rec, Instances: rec,
		NewID: func() uint64 { return ids.Add(1) }, Instance: "test", Clock: clock}
	change(&p)
	return New(p), rec
}

func connectAgent(tb testing.TB, s *Service, agent uint64) {
	tb.Helper()
	if err := s.AgentConnected(context.Background(), Sender{ID: agent, Agent: true, Name: "A"}, nil); err != nil {
		tb.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the settle window
}

// The push of a hand-out to its agent fails (the user was told): the
// loop sends it again, so the agent, still connected, does not hold a
// conversation it never heard of. Once through, it is not sent again.
func TestAgentLearnsOfAHandOutWhosePushFailed(t *testing.T) {
	agent, uid := ids.Add(1), ids.Add(1)
	var push *failingPusher
	s, rec := newServiceWith(t, Config{Settle: time.Millisecond}, func(p *Params) {
		push = &failingPusher{recorder: p.Push.(*recorder), uid: AgentKey(agent)}
		p.Push = push
	})
	ctx := context.Background()
	connectAgent(t, s, agent)
	push.mu.Lock()
	push.fails = 1
	push.mu.Unlock()
	if _, err := s.Send(ctx, Sender{ID: uid}, nil, SendRequest{Text: "are you there?"}); err != nil {
		t.Fatal(err)
	}
	if got := rec.types(uid); !slices.Contains(got, "chat.assigned") {
		t.Fatalf("user got %v, want chat.assigned", got)
	}
	if got := rec.types(AgentKey(agent)); slices.Contains(got, "chat.assigned") {
		t.Fatalf("agent got %v before the loop, want no chat.assigned (its push failed)", got)
	}
	s.retell(ctx)
	got := rec.types(AgentKey(agent))
	if !slices.Contains(got, "chat.assigned") || !slices.Contains(got, "chat.msg") {
		t.Fatalf("agent got %v after the loop, want chat.assigned and the line", got)
	}
	s.retell(ctx)
	if again := rec.types(AgentKey(agent)); len(again) != len(got) {
		t.Fatalf("agent got %v on the next loop, want nothing more", again[len(got):])
	}
}
