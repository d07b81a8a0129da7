package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/metrics"
)

// Connects beyond Connects wait at most ConnectWait for a turn, then are
// refused with a retry hint (spread between 1 and 5 s); a freed slot lets
// the next one in.
func TestConnectsBeyondTheLimitAreShedWithAHint(t *testing.T) {
	s := New(Deps{Connects: 2, ConnectWait: 50 * time.Millisecond, Metrics: metrics.New(func() (int, int) { return 0, 0 })})
	defer s.Close()
	ctx := context.Background()
	r1, err := s.admit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admit(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.admit(ctx)
	var busy *BusyError
	if !errors.As(err, &busy) {
		t.Fatalf("third connect = %v, want a BusyError", err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond || waited > 2*time.Second {
		t.Fatalf("refused after %v, want after the 50 ms wait", waited)
	}
	if busy.RetryAfter < time.Second || busy.RetryAfter >= 5*time.Second {
		t.Fatalf("retry hint %v, want 1–5 s", busy.RetryAfter)
	}
	done := make(chan error, 1)
	go func() {
		r, err := s.admit(ctx)
		if err == nil {
			r()
		}
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	r1() // a connect finishes: the waiting one gets its turn
	if err := <-done; err != nil {
		t.Fatalf("a connect waiting when a slot freed = %v", err)
	}
}
