package broadcast

import (
	"testing"

	"github.com/pushdesk/pushdesk/app/hub"
)

func TestBroadcastEnvelopeRoundTrip(t *testing.T) {
	live := liveBroadcast{Segment: "vip", Kind: "system", Gen: 12}
	f := hub.Frame{Type: "msg", ID: "9", Key: "9:1", Data: []byte(`{"type":"msg","id":"9","broadcast":true}`)}
	gotLive, got, err := decodeEnvelope(encodeEnvelope(live, f))
	if err != nil || gotLive != live || got.ID != "9" || string(got.Data) != string(f.Data) || got.Shared == nil {
		t.Fatalf("decode = %+v %+v %v", gotLive, got, err)
	}
	for _, bad := range []string{"vip\n", "vip\tsystem\n", "vip\tsystem\tx\nmsg\t9\t9:1\t{}\n", "vip\tsystem\t1\n"} {
		if _, _, err := decodeEnvelope([]byte(bad)); err == nil {
			t.Errorf("decodeEnvelope(%q) = nil error", bad)
		}
	}
}
