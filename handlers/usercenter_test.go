package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/auth"
)

// userCenterStub is a real HTTP server playing the user center.
type userCenterStub struct {
	*httptest.Server
	calls atomic.Int64
}

func newUserCenter(t *testing.T) *userCenterStub {
	u := &userCenterStub{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		var uid int
		if _, err := fmt.Sscanf(r.Header.Get("Authorization"), "Bearer good-%d", &uid); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"uid":%d,"role":"user","groups":["authors"]}`, uid)
	}))
	t.Cleanup(u.Close)
	return u
}

func TestUserCenterAuth(t *testing.T) {
	uc := newUserCenter(t)
	s := startServer(t, func(c *app.Config) {
		c.AuthURL = uc.URL
		c.AuthTTLBase, c.AuthTTLJitter, c.AuthNegativeTTL = 100*time.Second, 50*time.Second, 30*time.Second
	})
	a := s.App
	ctx := context.Background()
	tok := fmt.Sprintf("good-%d-%d", newUID(), time.Now().UnixNano())

	t.Run("miss then hit", func(t *testing.T) {
		before := uc.calls.Load()
		id, err := a.Auth.Authenticate(ctx, tok)
		if err != nil || id.UID == 0 || len(id.Groups) != 1 {
			t.Fatalf("Authenticate = %+v, %v", id, err)
		}
		if _, err := a.Auth.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if got := uc.calls.Load() - before; got != 1 {
			t.Fatalf("user center called %d times, want 1 (then cached)", got)
		}
	})
	t.Run("jitter spread inside its bounds", func(t *testing.T) {
		ttls := map[int64]bool{}
		for i := range 40 {
			tk := fmt.Sprintf("good-%d-j%d-%d", 5+i, i, time.Now().UnixNano())
			if _, err := a.Auth.Authenticate(ctx, tk); err != nil {
				t.Fatal(err)
			}
			ms, err := a.Redis.Do(ctx, a.Redis.B().Pttl().Key(tokenKey(tk)).Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			if ms < (100+1)*1000-2000 || ms > (100+50)*1000 {
				t.Fatalf("TTL %d ms outside [101 s, 150 s]", ms)
			}
			ttls[ms/1000] = true
		}
		if len(ttls) < 10 {
			t.Fatalf("only %d distinct TTLs over 40 tokens, want them spread", len(ttls))
		}
		for range 1000 {
			if d := auth.TTL(3650*time.Second, 3000*time.Second); d < 3651*time.Second || d > 6650*time.Second {
				t.Fatalf("AuthTTL = %v, want 3651 s to 6650 s", d)
			}
		}
	})
	t.Run("rejected token is cached briefly", func(t *testing.T) {
		before := uc.calls.Load()
		for range 3 {
			if _, err := a.Auth.Authenticate(ctx, "bad-token"); err != auth.ErrUnauthorized {
				t.Fatalf("Authenticate(bad) = %v, want unauthorized", err)
			}
		}
		if got := uc.calls.Load() - before; got > 1 {
			t.Fatalf("user center called %d times for a rejected token, want 1", got)
		}
	})
	t.Run("JWT works beside it", func(t *testing.T) {
		if id, err := a.Auth.Authenticate(ctx, mint(t, 99)); err != nil || id.UID != 99 {
			t.Fatalf("JWT = %+v, %v", id, err)
		}
	})
	t.Run("user center down", func(t *testing.T) {
		uc.Close()
		if _, err := a.Auth.Authenticate(ctx, tok); err != nil {
			t.Fatalf("cached token while down = %v, want accepted", err)
		}
		_, err := a.Auth.Authenticate(ctx, "good-777-unknown")
		if e, ok := apierr.As(err); !ok || e.Status != 503 {
			t.Fatalf("unknown token while down = %v, want 503", err)
		}
		// Over the wire: 503 before the upgrade, cached tokens connect.
		_, res, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token=good-778-unknown", nil)
		if err == nil || res == nil || res.StatusCode != 503 {
			t.Fatalf("ws with unknown token while down = %v %v, want 503", res, err)
		}
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token="+tok, nil)
		if err != nil {
			t.Fatalf("ws with cached token while down: %v", err)
		}
		conn.Close()
	})
}
