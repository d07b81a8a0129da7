package chat

import (
	"encoding/json"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
)

// AgentRef names an agent in frames and listings.
type AgentRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// UserRef names a user; Online is set where agents see it.
type UserRef struct {
	ID     string `json:"id"`
	Online *bool  `json:"online,omitempty"`
}

type assignedFrame struct {
	Type           string    `json:"type"`
	ConversationID string    `json:"conversation_id"`
	Status         string    `json:"status"`
	OpenedAt       int64     `json:"opened_at"`
	Agent          *AgentRef `json:"agent,omitempty"`
	User           *UserRef  `json:"user,omitempty"`
}

type queuedFrame struct {
	Type           string `json:"type"`
	ConversationID string `json:"conversation_id"`
	Position       int    `json:"position"`
	Since          int64  `json:"since"`
}

// Line is one chat line as frames and REST show it.
type Line struct {
	Type           string    `json:"type,omitempty"`
	ConversationID string    `json:"conversation_id"`
	ID             string    `json:"id"`
	From           string    `json:"from"`
	Text           string    `json:"text"`
	TS             int64     `json:"ts"`
	Replay         bool      `json:"replay,omitempty"`
	Agent          *AgentRef `json:"agent,omitempty"`
	ClientMsgID    string    `json:"client_msg_id,omitempty"`
}

// Ack is the answer to a chat.send.
type Ack struct {
	Type           string `json:"type"`
	ClientMsgID    string `json:"client_msg_id"`
	ID             string `json:"id"`
	ConversationID string `json:"conversation_id"`
	TS             int64  `json:"ts"`
}

type convFrame struct {
	Type           string `json:"type"`
	ConversationID string `json:"conversation_id"`
	ToAgent        string `json:"to_agent,omitempty"`
}

type presenceFrame struct {
	Type           string  `json:"type"`
	ConversationID string  `json:"conversation_id"`
	User           UserRef `json:"user"`
}

type statusFrame struct {
	Type     string `json:"type"`
	Status   string `json:"status"`
	Load     int    `json:"load"`
	Capacity int    `json:"capacity"`
}

type errorFrame struct {
	Type           string `json:"type"`
	Code           int    `json:"code"`
	Msg            string `json:"msg"`
	ConversationID string `json:"conversation_id,omitempty"`
	ClientMsgID    string `json:"client_msg_id,omitempty"`
}

func frame(typ string, v any) hub.Frame {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own structs
	}
	return hub.Frame{Type: typ, Data: b}
}

func lineOf(l *models.ChatLine) Line {
	out := Line{ConversationID: utoa(l.ConversationID), ID: utoa(l.ID), From: l.Sender, Text: l.Text, TS: l.CreatedAt.UnixMilli()}
	if l.Sender == models.SenderAgent {
		out.Agent = &AgentRef{ID: utoa(l.SenderID), Name: l.SenderName}
	}
	if l.ClientMsgID != nil {
		out.ClientMsgID = *l.ClientMsgID
	}
	return out
}

func lineFrame(l *models.ChatLine, replay bool) hub.Frame {
	v := lineOf(l)
	v.Type, v.Replay = "chat.msg", replay
	return frame(v.Type, v)
}

func ackOf(l *models.ChatLine) *Ack {
	a := &Ack{Type: "chat.ack", ID: utoa(l.ID), ConversationID: utoa(l.ConversationID), TS: l.CreatedAt.UnixMilli()}
	if l.ClientMsgID != nil {
		a.ClientMsgID = *l.ClientMsgID
	}
	return a
}

func closedFrame(cid string) hub.Frame {
	return frame("chat.closed", convFrame{Type: "chat.closed", ConversationID: cid})
}

// ErrorFrame is the error frame for err as the chat answers it.
func ErrorFrame(err error, conversationID, clientMsgID string) hub.Frame {
	e, ok := AsError(err)
	if !ok {
		e = ErrUnavailable
	}
	return frame("error", errorFrame{Type: "error", Code: e.Code, Msg: e.Message, ConversationID: conversationID, ClientMsgID: clientMsgID})
}
