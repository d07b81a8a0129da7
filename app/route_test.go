package app

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/redis/rueidis"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	frames := []hub.Frame{
		{Type: "msg", ID: "12", Key: "12:1", Data: []byte(`{"type":"msg","id":"12","body":{"t":"a\tb"}}`)},
		{Type: "unread", Data: []byte(`{"type":"unread","total":1}`)},
	}
	uid, got, err := decodeEnvelope(encodeEnvelope(42, frames))
	if err != nil || uid != 42 {
		t.Fatalf("decode = %d %v", uid, err)
	}
	if !reflect.DeepEqual(got, frames) {
		t.Fatalf("decode = %+v, want %+v", got, frames)
	}
	for _, bad := range []string{"", "x\n", "1\nmsg\n", "1\nmsg\tid\n"} {
		if _, _, err := decodeEnvelope([]byte(bad)); err == nil {
			t.Errorf("decodeEnvelope(%q) = nil error", bad)
		}
	}
}

func TestUnreadFromHash(t *testing.T) {
	u := unreadFromHash(map[string]int64{"~": 1, "~unacked": 2, "comment": 3, "mail": 0, "sys": -1})
	if u.Total != 3 || u.Unacked != 2 || len(u.ByKind) != 1 || u.ByKind["comment"] != 3 {
		t.Fatalf("unreadFromHash = %+v, want total 3 unacked 2 {comment:3}", u)
	}
}

func TestUnreadStateCrossesInstances(t *testing.T) {
	u := Unread{Total: 3, ByKind: map[string]int64{"comment": 2, "system": 1}, Unacked: 1, gen: 7}
	_, got, err := decodeEnvelope(encodeEnvelope(42, []hub.Frame{unreadFrameOf(u)}))
	if err != nil || len(got) != 1 {
		t.Fatalf("decode: %v", err)
	}
	if st, ok := got[0].State.(*Unread); !ok || !reflect.DeepEqual(*st, u) {
		t.Fatalf("State after the trip = %#v, want %#v", got[0].State, u)
	}
}

func TestBroadcastEnvelopeRoundTrip(t *testing.T) {
	live := liveBroadcast{Segment: "vip", Kind: "system", Gen: 12}
	f := hub.Frame{Type: "msg", ID: "9", Key: "9:1", Data: []byte(`{"type":"msg","id":"9","broadcast":true}`)}
	rest, _ := bytes.CutPrefix(encodeBroadcastEnvelope(live, f), []byte("B\n"))
	gotLive, got, err := decodeBroadcastEnvelope(rest)
	if err != nil || gotLive != live || got.ID != "9" || string(got.Data) != string(f.Data) || got.Shared == nil {
		t.Fatalf("decode = %+v %+v %v", gotLive, got, err)
	}
	for _, bad := range []string{"vip\n", "vip\tsystem\n", "vip\tsystem\tx\nmsg\t9\t9:1\t{}\n", "vip\tsystem\t1\n"} {
		if _, _, err := decodeBroadcastEnvelope([]byte(bad)); err == nil {
			t.Errorf("decodeBroadcastEnvelope(%q) = nil error", bad)
		}
	}
}

func TestUnreadPlusCopies(t *testing.T) {
	u := Unread{Total: 1, ByKind: map[string]int64{"comment": 1}, gen: 3}
	v := u.plus("system", 4)
	if v.Total != 2 || v.ByKind["system"] != 1 || v.ByKind["comment"] != 1 || v.gen != 4 {
		t.Fatalf("plus = %+v", v)
	}
	if len(u.ByKind) != 1 {
		t.Fatalf("plus changed the original: %+v", u)
	}
}

func TestUnreadFrameMatchesEncodingJSON(t *testing.T) {
	for _, u := range []Unread{
		{},
		{ByKind: map[string]int64{}},
		{Total: 5, ByKind: map[string]int64{"system": 2, "comment": 3, "a.b-c_9": 0}, Unacked: 4},
		{Total: -1, ByKind: map[string]int64{`q"uote`: 1, "<tag>": 2, "ünï": 3, "tab\t": 4, `back\slash`: 5}, Unacked: 1 << 40},
	} {
		want := mustJSON(unreadFrame{Type: "unread", Unread: u})
		if got := appendUnreadFrame(nil, u); string(got) != string(want) {
			t.Errorf("appendUnreadFrame = %s\nencoding/json    = %s", got, want)
		}
	}
}

// A process without workers wakes every process's worker loops through
// pub/sub.
func TestPublishWakeReachesOnWake(t *testing.T) {
	a := testApp(t)
	got := make(chan struct{}, 1)
	a.SetOnWake(func() {
		select {
		case got <- struct{}{}:
		default:
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
	a := testApp(t)
	ctx := context.Background()
	const uid, other = 7601, 7602
	for _, c := range []rueidis.Completed{
		a.Redis.B().Set().Key(keyAlive("elsewhere")).Value("1").Build(),
		a.Redis.B().Hset().Key(keyUserConns(uid)).FieldValue().FieldValue("elsewhere", "1").Build(),
		a.Redis.B().Hset().Key(keyUserConns(other)).FieldValue().FieldValue("elsewhere", "1").Build(),
	} {
		if err := a.Redis.Do(ctx, c).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.pushToUser(ctx, uid, hub.Frame{Type: "msg", ID: "77", Key: "77:1", Data: []byte(`{"type":"msg","id":"77"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := a.pushToUser(ctx, other, hub.Frame{Type: ctlSegments}); err != nil {
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
			to, frames, err := decodeEnvelope([]byte(m))
			switch {
			case err != nil:
				t.Fatalf("republished %q: %v", m, err)
			case to == uid && (len(frames) != 2 || frames[0].ID != "77" || frames[1].Type != "unread"):
				t.Fatalf("republished %q, want msg 77 and the counts", m)
			case to == other && (len(frames) != 1 || frames[0].Type != ctlSegments):
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
	a := testApp(t)
	ctx := context.Background()
	const uid = 7603
	if err := a.Redis.Do(ctx, a.Redis.B().Hset().Key(keyUserConns(uid)).FieldValue().FieldValue("crashed", "1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := a.pushToUser(ctx, uid, hub.Frame{Type: "msg", ID: "78", Key: "78:1", Data: []byte(`{"type":"msg","id":"78"}`)}); err != nil {
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
