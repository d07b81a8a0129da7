package session

import (
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/auth"
)

// tally is what a run of frames through a budget came to.
type tally struct{ ok, refused, told, floodAt int }

// run sends n frames through b, every gap apart from start, and stops at
// the first FrameFlood (floodAt: its index, else -1).
func run(b *FrameBudget, start time.Time, n int, gap time.Duration) (tally, time.Time) {
	t := tally{floodAt: -1}
	now := start
	for i := range n {
		switch b.Take(now) {
		case FrameOK:
			t.ok++
		case FrameRefusedTell:
			t.told++
			t.refused++
		case FrameRefused:
			t.refused++
		case FrameFlood:
			t.floodAt = i
			return t, now
		}
		now = now.Add(gap)
	}
	return t, now
}

func TestFrameBudget(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name     string
		n        int
		gap      time.Duration
		want     func(tally) bool
		describe string
	}{
		{"a burst within the budget goes through", 300, 0,
			func(r tally) bool { return r.ok == 300 && r.refused == 0 && r.floodAt < 0 }, "300 ok"},
		{"a client at its rate is never refused", 3000, time.Second / 30,
			func(r tally) bool { return r.ok == 3000 && r.floodAt < 0 }, "3000 ok"},
		{"a client a little over its rate is slowed, not closed", 6000, time.Second / 36,
			func(r tally) bool { return r.refused > 0 && r.told > 0 && r.floodAt < 0 && r.ok >= 300+30*(6000/36)-1 },
			"some refused (each run told once), none a flood, the rate served"},
		{"a flood is closed after about twice the burst", 5000, 0,
			func(r tally) bool { return r.ok == 300 && r.told == 1 && r.floodAt == 600 }, "300 ok, 1 told, flood at 600"},
		{"a fast flood is closed soon after the burst", 5000, time.Millisecond,
			func(r tally) bool { return r.floodAt > 0 && r.floodAt < 1000 }, "flood within 1,000 frames"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &FrameBudget{Rate: 30, Burst: 300}
			if got, _ := run(b, t0, tc.n, tc.gap); !tc.want(got) {
				t.Fatalf("%d frames %v apart = %+v, want %s", tc.n, tc.gap, got, tc.describe)
			}
		})
	}
}

// A budget refills: a client that paused after being refused is served again.
func TestFrameBudgetRecovers(t *testing.T) {
	b := &FrameBudget{Rate: 30, Burst: 300}
	t0 := time.Unix(1_700_000_000, 0)
	r, now := run(b, t0, 500, 0)
	if r.ok != 300 || r.refused != 200 || r.floodAt >= 0 {
		t.Fatalf("500 at once = %+v, want 300 ok and 200 refused", r)
	}
	r, _ = run(b, now.Add(20*time.Second), 300, 0)
	if r.ok != 300 || r.refused != 0 {
		t.Fatalf("300 after a 20 s pause = %+v, want all ok", r)
	}
}

// An agent at capacity 40 may send its chat's whole line limit (Rate ×
// Capacity per 10 s, 800) at once, each line followed by a chat.read, and
// keep that pace, without one frame refused: the chat's own 429 comes
// first.
func TestFrameBudgetNeverSlowsAnAgentAtCapacity(t *testing.T) {
	s := New(Deps{ChatLineLimit: 20 * 40}) // the chat's defaults at capacity 40
	defer s.Close()
	b := s.NewFrameBudget(auth.RoleAgent)
	lines := 20 * 40
	t0 := time.Unix(1_700_000_000, 0)
	now := t0
	for window := range 6 { // a minute of it
		r, _ := run(b, now, 2*lines, 0)
		if r.ok != 2*lines {
			t.Fatalf("window %d: %d frames at once = %+v, want all ok", window, 2*lines, r)
		}
		now = now.Add(chatLineWindow)
	}
	// Spread out instead: 2 × 80 frames a second, plus pings and an
	// agent.status a second.
	r, _ := run(b, now, 60*162, time.Second/162)
	if r.refused != 0 {
		t.Fatalf("a minute at 162 frames/s = %+v, want none refused", r)
	}
	if u := s.NewFrameBudget(auth.RoleUser); u.Rate != defaultFrameRate || u.Burst != defaultFrameBurst {
		t.Fatalf("user budget = %v/s, %v, want %v/s, %v", u.Rate, u.Burst, defaultFrameRate, defaultFrameBurst)
	}
	s.FrameRate, s.FrameBurst = 5, 50
	if u := s.NewFrameBudget(auth.RoleUser); u.Rate != 5 || u.Burst != 50 {
		t.Fatalf("configured user budget = %v/s, %v, want 5/s, 50", u.Rate, u.Burst)
	}
}
