package chat

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

// Close ends conversation cid, by its user or by the agent holding it.
func (s *Service) Close(ctx context.Context, who Sender, cid string) error {
	if parseU(cid) == 0 {
		return ErrNoConversation
	}
	c, ok, err := s.live(ctx, cid)
	if err != nil {
		return err
	}
	if !ok {
		conv, err := s.repo.GetConversation(ctx, parseU(cid))
		switch {
		case errors.Is(err, models.ErrNoConversation):
			return ErrNoConversation
		case err != nil:
			return s.unavailable("get conversation", err)
		case !who.Agent && conv.UserID != who.ID:
			return ErrNotYours
		}
		return ErrClosed
	}
	if (who.Agent && c.agent != who.ID) || (!who.Agent && c.user != who.ID) {
		return ErrNotYours
	}
	res, err := s.run(ctx, closeScript, cid).AsStrSlice()
	if err != nil {
		// The answer may be what was lost: closed is closed.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		if _, still, rerr := s.live(ctx, cid); rerr != nil || still {
			return s.unavailable("close", err)
		}
		res = []string{utoa(c.user)}
	}
	if len(res) == 0 {
		return ErrClosed // closed meanwhile
	}
	if err := s.repo.Close(ctx, c.id, s.clock.Now().UTC()); err != nil {
		s.log.Error("chat: conversation closed in Redis but not in MySQL", "conversation", cid, "err", err)
	}
	s.log.Info("chat closed", "conversation", cid, "by", who.key())
	f := closedFrame(cid)
	s.toUser(ctx, c.user, f)
	if c.agent != 0 {
		s.toAgent(ctx, c.agent, f)
		s.sendStatus(ctx, c.agent)
		s.Kick() // room for the waiting
	} else {
		s.requeue(ctx)
	}
	return nil
}

// Transfer hands conversation cid from the agent holding it to another
// available agent.
func (s *Service) Transfer(ctx context.Context, who Sender, cid, to string) error {
	if !who.Agent {
		return ErrUsersCannot
	}
	target := parseU(to)
	if target == 0 {
		return newError(400, "invalid_input", "to_agent must be an agent id")
	}
	if target == who.ID {
		return newError(400, "invalid_input", "the conversation is already yours")
	}
	c, err := s.held(ctx, who, cid)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	res, err := s.run(ctx, transferScript, cid, utoa(who.ID), to, itoa(now.UnixMilli())).AsStrSlice()
	if err != nil || len(res) == 0 {
		// The answer may be what was lost: moved to target is moved.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		now2, ok := s.transferred(ctx, cid, target)
		if !ok {
			return s.unavailable("transfer", err)
		}
		now, res = now2, []string{"ok"}
	}
	switch res[0] {
	case "gone":
		return ErrClosed
	case "notyours":
		return ErrNotYours
	case "offline":
		return ErrTargetOffline
	}
	h := handout{cid: cid, user: c.user, agent: target, from: who.ID, reason: ReasonTransfer, opened: timeMS(c.opened), at: now}
	s.record(ctx, &h)
	s.announce(ctx, []handout{h}, true)
	return nil
}

// transferred reports whether conversation cid was just transferred to
// target, and when: what a transfer whose answer was lost did.
func (s *Service) transferred(ctx context.Context, cid string, target uint64) (time.Time, bool) {
	c, ok, err := s.live(ctx, cid)
	if err != nil || !ok || c.agent != target || c.reason != ReasonTransfer || c.at == 0 {
		return time.Time{}, false
	}
	return timeMS(c.at), true
}

// Read clears the agent's unread badge of conversation cid.
func (s *Service) Read(ctx context.Context, who Sender, cid string) error {
	if !who.Agent {
		return ErrUsersCannot
	}
	if _, err := s.held(ctx, who, cid); err != nil {
		return err
	}
	if err := s.repo.MarkAgentRead(ctx, parseU(cid)); err != nil {
		return s.unavailable("mark read", err)
	}
	return nil
}

type clientFrame struct {
	Type           string `json:"type"`
	ConversationID string `json:"conversation_id"`
	Text           string `json:"text"`
	ClientMsgID    string `json:"client_msg_id"`
	ToAgent        string `json:"to_agent"`
	Status         string `json:"status"`
}

// HandlesFrame reports whether typ is a frame type of the chat.
func HandlesFrame(typ string) bool {
	switch typ {
	case "chat.send", "chat.close", "chat.transfer", "chat.read", "agent.status":
		return true
	}
	return false
}

// HandleFrame acts on one chat frame from who's connection conn and
// answers problems with an error frame on it.
func (s *Service) HandleFrame(ctx context.Context, who Sender, conn Conn, data []byte) {
	var f clientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		send(conn, ErrorFrame(newError(400, "invalid_input", "bad chat frame: %v", err), "", ""))
		return
	}
	var err error
	switch f.Type {
	case "chat.send":
		_, err = s.Send(ctx, who, conn, SendRequest{ConversationID: f.ConversationID, Text: f.Text, ClientMsgID: f.ClientMsgID})
	case "chat.close":
		err = s.Close(ctx, who, f.ConversationID)
	case "chat.transfer":
		err = s.Transfer(ctx, who, f.ConversationID, f.ToAgent)
	case "chat.read":
		err = s.Read(ctx, who, f.ConversationID)
	case "agent.status":
		if !who.Agent {
			err = ErrUsersCannot
		} else {
			err = s.SetStatus(ctx, who, f.Status)
		}
	default:
		err = newError(400, "invalid_input", "unknown chat frame %q", f.Type)
	}
	if err != nil {
		send(conn, ErrorFrame(err, f.ConversationID, f.ClientMsgID))
	}
}
