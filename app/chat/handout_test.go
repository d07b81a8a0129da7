package chat

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// logRecorder keeps the message and attributes of every record logged.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]map[string]string
	attrs   []slog.Attr
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), records: new([]map[string]string)}
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message}
	for _, a := range l.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.records = append(*l.records, m)
	return nil
}

func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(slices.Clone(l.attrs), as...)
	return &c
}

func (l *logRecorder) WithGroup(string) slog.Handler { return l }

// handOuts returns the reason of each "chat hand-out" logged, by
// conversation.
func (l *logRecorder) handOuts() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]string{}
	for _, r := range *l.records {
		if r["msg"] == "chat hand-out" {
			out[r["conversation"]] = append(out[r["conversation"]], r["reason"])
		}
	}
	return out
}

// Every way a conversation reaches an agent — least loaded, sticky,
// backlog, transfer, reassignment after the grace — is logged with its
// reason and counted by it; the wait to a first agent is observed for
// the first three only; moving off a gone agent counts as a
// reassignment whether another agent takes it or it goes back to
// waiting; the gauges show what waits and what is live.
func TestHandOutsAreLoggedAndCountedByReason(t *testing.T) {
	logs := newLogRecorder()
	reg := prometheus.NewRegistry()
	s, _ := newServiceWith(t, Config{Settle: time.Millisecond, Grace: time.Minute}, func(p *Params) {
		p.Log, p.Registerer = slog.New(logs), reg
	})
	clock := s.clock.(*offsetClock)
	ctx := context.Background()
	a, b, u1, u2 := ids.Add(1), ids.Add(1), ids.Add(1), ids.Add(1)
	agentA, agentB := Sender{ID: a, Agent: true, Name: "A"}, Sender{ID: b, Agent: true, Name: "B"}
	connectAgent(t, s, a)

	first, err := s.Send(ctx, Sender{ID: u1}, nil, SendRequest{Text: "one"}) // least loaded
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx, Sender{ID: u1}, first.ConversationID); err != nil {
		t.Fatal(err)
	}
	again, err := s.Send(ctx, Sender{ID: u1}, nil, SendRequest{Text: "two"}) // sticky
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus(ctx, agentA, "away"); err != nil {
		t.Fatal(err)
	}
	waiting, err := s.Send(ctx, Sender{ID: u2}, nil, SendRequest{Text: "three"}) // waits
	if err != nil {
		t.Fatal(err)
	}
	s.gauges(ctx)
	if w, l := testutil.ToFloat64(s.m.waiting), testutil.ToFloat64(s.m.live); w != 1 || l != 2 {
		t.Fatalf("gauges waiting %v, live %v; want 1 and 2", w, l)
	}
	if err := s.SetStatus(ctx, agentA, "online"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the settle window
	s.distribute(ctx)                // backlog
	if err := s.AgentConnected(ctx, agentB, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Transfer(ctx, agentA, waiting.ConversationID, utoa(b)); err != nil { // transfer
		t.Fatal(err)
	}
	s.AgentDisconnected(ctx, a)
	clock.off.Add(int64(time.Minute + time.Second))
	s.reap(ctx) // a's conversation of u1 goes to b: reassign
	s.AgentDisconnected(ctx, b)
	clock.off.Add(int64(time.Minute + time.Second))
	s.reap(ctx) // b's two go back to waiting
	s.gauges(ctx)
	if w := testutil.ToFloat64(s.m.waiting); w != 2 {
		t.Fatalf("waiting gauge %v, want 2", w)
	}

	want := map[string][]string{
		first.ConversationID:   {ReasonLeastLoaded},
		again.ConversationID:   {ReasonSticky, ReasonReassign},
		waiting.ConversationID: {ReasonBacklog, ReasonTransfer},
	}
	got := logs.handOuts()
	for cid, reasons := range want {
		if !slices.Equal(got[cid], reasons) {
			t.Errorf("hand-outs logged for %s = %v, want %v", cid, got[cid], reasons)
		}
	}
	for _, r := range []string{ReasonLeastLoaded, ReasonSticky, ReasonBacklog, ReasonTransfer, ReasonReassign} {
		if n := testutil.ToFloat64(s.m.assignments.WithLabelValues(r)); n != 1 {
			t.Errorf("assignments{reason=%q} = %v, want 1", r, n)
		}
	}
	if n := testutil.ToFloat64(s.m.reassigned); n != 3 {
		t.Errorf("reassignments = %v, want 3 (one to b, two back to waiting)", n)
	}
	if n := testutil.CollectAndCount(reg, "pushdesk_chat_wait_seconds"); n != 1 {
		t.Errorf("wait histogram series = %d, want 1", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pushdesk_chat_wait_seconds" {
			if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c != 3 {
				t.Errorf("wait observations = %d, want 3 (first agents only)", c)
			}
		}
	}
}
