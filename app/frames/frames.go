package frames

import (
	"encoding/json"
	"slices"
	"strconv"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/models"
)

// Unread is a user's unread snapshot. Unacked (an extension) counts unread
// messages no client has acknowledged yet: ack lowers it, read lowers both.
type Unread struct {
	Total   int64            `json:"total"`
	ByKind  map[string]int64 `json:"by_kind"`
	Unacked int64            `json:"unacked"`
	// Gen is the broadcast generation the counts include (0: unknown), so
	// a live broadcast can update a connection's last counts without
	// counting itself twice.
	Gen int64 `json:"-"`
}

// Hello is the first frame of a connection.
type Hello struct {
	Type       string `json:"type"`
	UID        string `json:"uid"`
	ConnID     string `json:"conn_id"`
	HeartbeatS int    `json:"heartbeat_s"`
	Unread     Unread `json:"unread"`
}

type msgFrame struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Body      json.RawMessage `json:"body"`
	TS        int64           `json:"ts"`
	Replay    bool            `json:"replay"`
	Count     uint32          `json:"count"`
	Broadcast bool            `json:"broadcast,omitempty"`
}

type unreadFrame struct {
	Type string `json:"type"`
	Unread
}

type errorFrame struct {
	Type string `json:"type"`
	Code int    `json:"code"`
	Msg  string `json:"msg"`
}

// MustJSON encodes one of this package's own structs.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only our own structs go through here
		panic(err)
	}
	return b
}

// Message is a stored message's msg frame.
func Message(m *models.Message, replay bool) hub.Frame {
	id := ids.Format(m.ID)
	return hub.Frame{Type: "msg", ID: id, Key: id + ":" + strconv.FormatUint(uint64(max(m.Count, 1)), 10), Data: MustJSON(msgFrame{
		Type: "msg", ID: id, Kind: m.Kind, Body: json.RawMessage(m.Body),
		TS: m.UpdatedAt.UnixMilli(), Replay: replay, Count: max(m.Count, 1),
	})}
}

// Broadcast is a broadcast's msg frame; a live one (not a replay) is
// encoded once for every connection it goes to (hub.Shared).
func Broadcast(b *models.Broadcast, replay bool) hub.Frame {
	id := ids.Format(b.ID)
	ts := b.CreatedAt
	if b.SentAt != nil {
		ts = *b.SentAt
	}
	f := hub.Frame{Type: "msg", ID: id, Key: id + ":1", Data: MustJSON(msgFrame{
		Type: "msg", ID: id, Kind: b.Kind, Body: json.RawMessage(b.Body), TS: ts.UnixMilli(),
		Replay: replay, Count: 1, Broadcast: true,
	})}
	if !replay {
		f.Shared = new(hub.Shared)
	}
	return f
}

// UnreadFrame builds an unread frame. Its Key carries the broadcast
// generation ("g<gen>") so the counts survive the trip to another
// instance as a connection's State (see decodeEnvelope).
func UnreadFrame(u Unread) hub.Frame {
	return hub.Frame{Type: "unread", Key: "g" + strconv.FormatInt(u.Gen, 10), Data: AppendUnread(nil, u), State: &u}
}

// AppendUnread appends u's unread frame JSON, byte for byte what
// encoding/json makes of unreadFrame (keys sorted), without reflection: a
// broadcast builds one per member.
func AppendUnread(dst []byte, u Unread) []byte {
	dst = append(dst, `{"type":"unread","total":`...)
	dst = strconv.AppendInt(dst, u.Total, 10)
	dst = append(dst, `,"by_kind":`...)
	if u.ByKind == nil {
		dst = append(dst, "null"...)
	} else {
		var stack [8]string
		keys := stack[:0]
		for k := range u.ByKind {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = strconv.AppendInt(dst, u.ByKind[k], 10)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"unacked":`...)
	dst = strconv.AppendInt(dst, u.Unacked, 10)
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string; kinds are plain ASCII, and
// anything else goes through encoding/json.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return append(dst, MustJSON(s)...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// Plus returns u with one more unread message of kind, as of broadcast
// generation gen.
func (u Unread) Plus(kind string, gen int64) Unread {
	by := make(map[string]int64, len(u.ByKind)+1)
	for k, n := range u.ByKind {
		by[k] = n
	}
	by[kind]++
	return Unread{Total: u.Total + 1, ByKind: by, Unacked: u.Unacked, Gen: gen}
}

// Error builds the contract's {"type":"error"} frame.
func Error(code int, msg string) hub.Frame {
	return hub.Frame{Type: "error", Data: MustJSON(errorFrame{Type: "error", Code: code, Msg: msg})}
}

// Pong answers a ping frame.
var Pong = hub.Frame{Type: "pong", Data: []byte(`{"type":"pong"}`)}
