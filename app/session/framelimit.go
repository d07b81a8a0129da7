package session

import (
	"cmp"
	"encoding/json"
	"time"

	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
)

// Frame budget defaults (see Config.FrameRate, Config.FrameBurst). A
// user's client sends an ack per message event (pushdesk.js acks what one
// WebSocket message brought), so the burst covers a full replay (100) and
// a sync's replay right after it, with room for pings and chat lines.
const (
	defaultFrameRate  = 30
	defaultFrameBurst = 300
)

// chatLineWindow is the window the chat's line limit counts over (see
// chat.Config.Rate).
const chatLineWindow = 10 * time.Second

// FrameBudget is one connection's allowance of client frames: a token
// bucket (Rate frames a second, Burst at once). A frame over it is
// refused; refused frames are strikes that fade at the same rate, and a
// client with more than Burst strikes standing keeps on flooding and is
// closed. A client a little over its rate is slowed; a flood ends the
// connection within about Burst frames. Not safe for concurrent use: the
// connection's read loop owns it.
type FrameBudget struct {
	Rate, Burst float64

	tokens, strikes float64
	last            time.Time
	refusing        bool // the frame before was refused
}

// Verdict is FrameBudget.Take's answer.
type Verdict int

const (
	// FrameOK: handle the frame.
	FrameOK Verdict = iota
	// FrameRefused: drop it, the client was told already.
	FrameRefused
	// FrameRefusedTell: drop it and tell the client (error 429): the first
	// refusal after a frame that went through.
	FrameRefusedTell
	// FrameFlood: drop it and close the connection (1008).
	FrameFlood
)

// Take spends a token on a frame that arrived at now.
func (b *FrameBudget) Take(now time.Time) Verdict {
	if b.last.IsZero() {
		b.tokens = b.Burst
	} else if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.Burst, b.tokens+dt*b.Rate)
		b.strikes = max(0, b.strikes-dt*b.Rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		b.refusing = false
		return FrameOK
	}
	b.strikes++
	if b.strikes > b.Burst {
		return FrameFlood
	}
	if b.refusing {
		return FrameRefused
	}
	b.refusing = true
	return FrameRefusedTell
}

// NewFrameBudget returns the budget of a connection of role r. An agent
// may send, on top of a user's budget, two frames (a line and a chat.read)
// per chat line its own line limit allows (chat.Config.Rate × Capacity per
// 10 s), so the chat's 429 comes first and the frame budget never slows an
// agent working at capacity.
func (s *Service) NewFrameBudget(r auth.Role) *FrameBudget {
	rate := float64(cmp.Or(s.FrameRate, defaultFrameRate))
	burst := float64(cmp.Or(s.FrameBurst, defaultFrameBurst))
	if r == auth.RoleAgent {
		lines := float64(s.ChatLineLimit)
		rate += 2 * lines / chatLineWindow.Seconds()
		burst += 2 * lines
	}
	return &FrameBudget{Rate: rate, Burst: burst}
}

// Admit spends c's budget b on a frame (data) that just arrived and
// reports whether to handle it. A refused frame gets an error 429 (once
// per run of refusals, carrying the frame's client_msg_id and
// conversation_id when it has them); a flood closes c with 1008.
func (s *Service) Admit(c *hub.Client, b *FrameBudget, data []byte) bool {
	switch b.Take(time.Now()) {
	case FrameOK:
		return true
	case FrameRefusedTell:
		c.SendDirect(tooManyFrames(data))
	case FrameFlood:
		s.Metrics.Errors.WithLabelValues("frame flood").Inc()
		c.Close(hub.ClosePolicy, "too many frames")
	}
	return false
}

// tooManyFrames is the 429 error frame for a refused client frame.
func tooManyFrames(data []byte) hub.Frame {
	var ids struct {
		ClientMsgID    string `json:"client_msg_id,omitempty"`
		ConversationID string `json:"conversation_id,omitempty"`
	}
	_ = json.Unmarshal(data, &ids) // best effort: the frame may not even be JSON
	return hub.Frame{Type: "error", Data: frames.MustJSON(struct {
		Type           string `json:"type"`
		Code           int    `json:"code"`
		Msg            string `json:"msg"`
		ClientMsgID    string `json:"client_msg_id,omitempty"`
		ConversationID string `json:"conversation_id,omitempty"`
	}{"error", 429, "too many frames, slow down", ids.ClientMsgID, ids.ConversationID})}
}
