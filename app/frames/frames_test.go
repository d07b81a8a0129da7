package frames

import "testing"

func TestUnreadPlusCopies(t *testing.T) {
	u := Unread{Total: 1, ByKind: map[string]int64{"comment": 1}, Gen: 3}
	v := u.Plus("system", 4)
	if v.Total != 2 || v.ByKind["system"] != 1 || v.ByKind["comment"] != 1 || v.Gen != 4 {
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
		want := MustJSON(unreadFrame{Type: "unread", Unread: u})
		if got := AppendUnread(nil, u); string(got) != string(want) {
			t.Errorf("appendUnreadFrame = %s\nencoding/json    = %s", got, want)
		}
	}
}
