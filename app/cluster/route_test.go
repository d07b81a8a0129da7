package cluster

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/redis/rueidis"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	frames := []hub.Frame{
		{Type: "msg", ID: "12", Key: "12:1", Data: []byte(`{"type":"msg","id":"12","body":{"t":"a\tb"}}`)},
		{Type: "unread", Data: []byte(`{"type":"unread","total":1}`)},
	}
	uid, got, err := DecodeEnvelope(EncodeEnvelope(42, frames))
	if err != nil || uid != 42 {
		t.Fatalf("decode = %d %v", uid, err)
	}
	if !reflect.DeepEqual(got, frames) {
		t.Fatalf("decode = %+v, want %+v", got, frames)
	}
	for _, bad := range []string{"", "x\n", "1\nmsg\n", "1\nmsg\tid\n"} {
		if _, _, err := DecodeEnvelope([]byte(bad)); err == nil {
			t.Errorf("DecodeEnvelope(%q) = nil error", bad)
		}
	}
}

func TestUnreadStateCrossesInstances(t *testing.T) {
	u := frames.Unread{Total: 3, ByKind: map[string]int64{"comment": 2, "system": 1}, Unacked: 1, Gen: 7}
	_, got, err := DecodeEnvelope(EncodeEnvelope(42, []hub.Frame{frames.UnreadFrame(u)}))
	if err != nil || len(got) != 1 {
		t.Fatalf("decode: %v", err)
	}
	if st, ok := got[0].State.(*frames.Unread); !ok || !reflect.DeepEqual(*st, u) {
		t.Fatalf("State after the trip = %#v, want %#v", got[0].State, u)
	}
}

// A process without workers wakes every process's worker loops through
// pub/sub.
func TestPublishWakeReachesDepsWake(t *testing.T) {
	got := make(chan struct{}, 1)
	a := testServiceWith(t, func(d *Deps) {
		d.Wake = func() {
			select {
			case got <- struct{}{}:
			default:
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for { // the subscription starts in the background: publish until it is up
		a.PublishWake()
		select {
		case <-got:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a published wake never reached OnWake")
		}
	}
}

// A push published while the user's other instance is not subscribed (it
// is resubscribing after a Redis restart) is published again until that
// instance hears it: a message with the counts as they are then, a
// control push as it was.
func TestPushNobodyHeardIsRepublished(t *testing.T) {
	a := testService(t)
	ctx := context.Background()
	const uid, other = 7601, 7602
	for _, c := range []rueidis.Completed{
		a.Redis.B().Set().Key(keyAlive("elsewhere")).Value("1").Build(),
		a.Redis.B().Hset().Key(KeyUserConns(uid)).FieldValue().FieldValue("elsewhere", "1").Build(),
		a.Redis.B().Hset().Key(KeyUserConns(other)).FieldValue().FieldValue("elsewhere", "1").Build(),
	} {
		if err := a.Redis.Do(ctx, c).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Push(ctx, uid, hub.Frame{Type: "msg", ID: "77", Key: "77:1", Data: []byte(`{"type":"msg","id":"77"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, other, hub.Frame{Type: "~seg"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond) // the first publishes went unheard; now the instance comes back
	got := make(chan string, 4)
	sub, cancel := a.Redis.Dedicate()
	defer cancel()
	wait := sub.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) { got <- m.Message }})
	if err := sub.Do(ctx, sub.B().Subscribe().Channel(keyInstanceChannel("elsewhere")).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case m := <-got:
			to, fs, err := DecodeEnvelope([]byte(m))
			switch {
			case err != nil:
				t.Fatalf("republished %q: %v", m, err)
			case to == uid && (len(fs) != 2 || fs[0].ID != "77" || fs[1].Type != "unread"):
				t.Fatalf("republished %q, want msg 77 and the counts", m)
			case to == other && (len(fs) != 1 || fs[0].Type != "~seg"):
				t.Fatalf("republished %q, want the control push alone", m)
			}
		case err := <-wait:
			t.Fatal(err)
		case <-time.After(5 * time.Second):
			t.Fatal("an unheard push was not published again")
		}
	}
}

// Nothing is tried again for an instance that is gone.
func TestPushToAGoneInstanceIsNotRepublished(t *testing.T) {
	a := testService(t)
	ctx := context.Background()
	const uid = 7603
	if err := a.Redis.Do(ctx, a.Redis.B().Hset().Key(KeyUserConns(uid)).FieldValue().FieldValue("crashed", "1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, uid, hub.Frame{Type: "msg", ID: "78", Key: "78:1", Data: []byte(`{"type":"msg","id":"78"}`)}); err != nil {
		t.Fatal(err)
	}
	// The first try comes after 100 ms and finds no alive key; without
	// that check the tries would go on for 8 s.
	time.Sleep(150 * time.Millisecond)
	deadline := time.Now().Add(3 * time.Second)
	for a.republishing.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d pushes still being tried for an instance without an alive key", a.republishing.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testService runs a cluster member on a Redis and a MySQL of the test's
// own. Its counts frame is a fixed one (the counts are not this
// package's); control frames and broadcasts are dropped.
func testService(t *testing.T) *Service { t.Helper(); return testServiceWith(t, func(*Deps) {}) }

// testServiceWith is testService with change applied to its Deps.
func testServiceWith(t *testing.T, change func(*Deps)) *Service {
	t.Helper()
	rc, _ := apptest.Redis(t)
	repo := apptest.Repo(t)
	log := apptest.Log()
	gen, err := ids.Lease(context.Background(), rc, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New()
	identity, err := CheckIdentity(context.Background(), rc, repo)
	if err != nil {
		t.Fatal(err)
	}
	d := Deps{Identity: identity,
		Redis: rc, Hub: h, Repo: repo, IDs: gen, Log: log, Metrics: metrics.New(h.Stats), Instance: "test",
		Counts: func(context.Context, uint64) (hub.Frame, error) {
			return frames.UnreadFrame(frames.Unread{Total: 1, ByKind: map[string]int64{"comment": 1}}), nil
		},
		Control:   func(uint64, hub.Frame) {},
		Broadcast: func([]byte) {},
		Resync:    func() {},
	}
	change(&d)
	s, err := New(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}
