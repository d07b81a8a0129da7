package app

import (
	"reflect"
	"testing"

	"github.com/pushdesk/pushdesk/app/hub"
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
