package chat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// loginOutcomes runs the logins at once and counts how each ended:
// "ok", "invalid" (401) or "throttled" (429).
func loginOutcomes(tb testing.TB, s *Service, tries []loginTry) map[string]int {
	tb.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for _, try := range tries {
		wg.Go(func() {
			_, err := s.Login(context.Background(), try.email, try.password, try.remote)
			what := "ok"
			var te *ThrottledError
			switch {
			case errors.As(err, &te):
				what = "throttled"
				if te.RetryAfterS < 1 || te.RetryAfterS > int(loginFailTTL.Seconds()) {
					tb.Errorf("Retry-After %d s, want 1 to %v", te.RetryAfterS, loginFailTTL)
				}
			case errors.Is(err, ErrInvalidLogin):
				what = "invalid"
			case err != nil:
				tb.Errorf("Login(%s) = %v", try.email, err)
			}
			mu.Lock()
			got[what]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

type loginTry struct{ email, password, remote string }

func addTestAgent(tb testing.TB, name string) (email, password string) {
	tb.Helper()
	email = fmt.Sprintf("%s-%d@example.com", name, ids.Add(1))
	_, password, err := AddAgent(context.Background(), testRepo, email, name)
	if err != nil {
		tb.Fatal(err)
	}
	return email, password
}

// Five failed logins of one email, from anywhere, and that email is
// throttled, even with its right password; other emails are not. The
// attempts come at once: each is counted before its password is checked,
// so a burst cannot get more than five guesses checked while the first
// ones are still being compared (it could when the count was read first
// and raised only after the slow compare).
func TestLoginFailuresAreSlowedPerEmail(t *testing.T) {
	s, _, _ := newTestService(t, Config{})
	email, password := addTestAgent(t, "Eve")
	other, otherPW := addTestAgent(t, "Olaf")
	var tries []loginTry
	for i := range 7 {
		tries = append(tries, loginTry{email, "wrong-" + fmt.Sprint(i), fmt.Sprintf("10.1.0.%d", i)})
	}
	if got := loginOutcomes(t, s, tries); got["invalid"] != maxFailsPerEmail || got["throttled"] != 7-maxFailsPerEmail {
		t.Fatalf("7 wrong logins at once = %v, want %d invalid and the rest throttled", got, maxFailsPerEmail)
	}
	if got := loginOutcomes(t, s, []loginTry{{email, password, "10.1.1.1"}}); got["throttled"] != 1 {
		t.Fatalf("right password of a throttled email = %v, want throttled", got)
	}
	if got := loginOutcomes(t, s, []loginTry{{other, otherPW, "10.1.0.1"}}); got["ok"] != 1 {
		t.Fatalf("another email from the same address = %v, want ok", got)
	}
}

// Twenty failed logins from one address, whatever the emails, and that
// address is throttled; other addresses are not. A successful login does
// not count against its address (an office behind one NAT logs in often).
func TestLoginFailuresAreSlowedPerAddress(t *testing.T) {
	s, _, _ := newTestService(t, Config{})
	email, password := addTestAgent(t, "Ada")
	const addr = "10.2.0.1"
	if got := loginOutcomes(t, s, []loginTry{{email, password, addr}}); got["ok"] != 1 {
		t.Fatalf("right password = %v, want ok", got)
	}
	ctx := context.Background()
	if n, _ := testRC.Do(ctx, testRC.B().Get().Key(s.k.loginFail("a:"+addr)).Build()).AsInt64(); n != 0 {
		t.Fatalf("failures counted for the address = %d, want 0 (a success is not one)", n)
	}
	// As if 18 had failed (a bcrypt compare under -race takes seconds:
	// twenty of them would make this test minutes long).
	if err := testRC.Do(ctx, testRC.B().Incrby().Key(s.k.loginFail("a:"+addr)).Increment(maxFailsPerAddr-2).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	var tries []loginTry
	for i := range 4 {
		tries = append(tries, loginTry{fmt.Sprintf("nobody-%d-%d@example.com", i, ids.Add(1)), "guess", addr})
	}
	if got := loginOutcomes(t, s, tries); got["invalid"] != 2 || got["throttled"] != 2 {
		t.Fatalf("4 wrong logins at once after 18 = %v, want 2 invalid and 2 throttled", got)
	}
	if got := loginOutcomes(t, s, []loginTry{{email, password, addr}}); got["throttled"] != 1 {
		t.Fatalf("right password from the throttled address = %v, want throttled", got)
	}
	if got := loginOutcomes(t, s, []loginTry{{email, password, "10.2.0.3"}}); got["ok"] != 1 {
		t.Fatalf("right password from another address = %v, want ok", got)
	}
}
