package app

import (
	"encoding/json"
	"strconv"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
)

// Unread is a user's unread snapshot. Unacked (an extension) counts unread
// messages no client has acknowledged yet: ack lowers it, read lowers both.
type Unread struct {
	Total   int64            `json:"total"`
	ByKind  map[string]int64 `json:"by_kind"`
	Unacked int64            `json:"unacked"`
	// gen is the broadcast generation the counts include (0: unknown), so
	// a live broadcast can update a connection's last counts without
	// counting itself twice.
	gen int64
}

type helloFrame struct {
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

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only our own structs go through here
		panic(err)
	}
	return b
}

func messageFrame(m *models.Message, replay bool) hub.Frame {
	id := FormatID(m.ID)
	return hub.Frame{Type: "msg", ID: id, Key: id + ":" + strconv.FormatUint(uint64(max(m.Count, 1)), 10), Data: mustJSON(msgFrame{
		Type: "msg", ID: id, Kind: m.Kind, Body: json.RawMessage(m.Body),
		TS: m.UpdatedAt.UnixMilli(), Replay: replay, Count: max(m.Count, 1),
	})}
}

// unreadFrameOf builds an unread frame. Its Key carries the broadcast
// generation ("g<gen>") so the counts survive the trip to another
// instance as a connection's State (see decodeEnvelope).
func unreadFrameOf(u Unread) hub.Frame {
	return hub.Frame{Type: "unread", Key: "g" + strconv.FormatInt(u.gen, 10), Data: mustJSON(unreadFrame{Type: "unread", Unread: u}), State: u}
}

// plus returns u with one more unread message of kind, as of broadcast
// generation gen.
func (u Unread) plus(kind string, gen int64) Unread {
	by := make(map[string]int64, len(u.ByKind)+1)
	for k, n := range u.ByKind {
		by[k] = n
	}
	by[kind]++
	return Unread{Total: u.Total + 1, ByKind: by, Unacked: u.Unacked, gen: gen}
}

// ErrorFrame builds the contract's {"type":"error"} frame.
func ErrorFrame(code int, msg string) hub.Frame {
	return hub.Frame{Type: "error", Data: mustJSON(errorFrame{Type: "error", Code: code, Msg: msg})}
}

var pongFrame = hub.Frame{Type: "pong", Data: []byte(`{"type":"pong"}`)}
