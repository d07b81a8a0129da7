package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// Sender is who a chat request speaks for (from a verified token).
type Sender struct {
	ID    uint64 // user id, or agent id when Agent
	Agent bool
	Name  string
}

func (s Sender) key() string {
	if s.Agent {
		return "a" + utoa(s.ID)
	}
	return "u" + utoa(s.ID)
}

// SendRequest is a chat.send.
type SendRequest struct {
	ConversationID string `json:"conversation_id"`
	Text           string `json:"text"`
	ClientMsgID    string `json:"client_msg_id"`
}

// MaxTextBytes is the longest chat line.
const MaxTextBytes = 4 << 10

func (r *SendRequest) validate() error {
	if strings.TrimSpace(r.Text) == "" {
		return ErrEmptyText
	}
	if len(r.Text) > MaxTextBytes {
		return ErrTextTooLong
	}
	if !utf8.ValidString(r.Text) {
		return newError(400, "invalid_input", "text is not valid UTF-8")
	}
	if utf8.RuneCountInString(r.ClientMsgID) > 64 {
		return ErrClientMsgID
	}
	return nil
}

// Send stores a line and delivers it. A user's first line opens a
// conversation. The ack goes to conn first (when given), after the line
// is stored; a repeated client_msg_id gets the first ack and stores
// nothing.
func (s *Service) Send(ctx context.Context, who Sender, conn Conn, req SendRequest) (*Ack, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	if err := s.limit(ctx, who); err != nil {
		return nil, err
	}
	if req.ClientMsgID != "" {
		prev, err := s.repo.LineByClientID(ctx, senderOf(who), who.ID, req.ClientMsgID)
		if err == nil {
			ack := ackOf(prev)
			send(conn, frame(ack.Type, ack))
			return ack, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, s.unavailable("find line", err)
		}
	}
	if who.Agent {
		return s.agentSend(ctx, who, conn, req)
	}
	return s.userSend(ctx, who, conn, req)
}

func senderOf(who Sender) string {
	if who.Agent {
		return models.SenderAgent
	}
	return models.SenderUser
}

func send(conn Conn, f ...hub.Frame) {
	if conn != nil {
		conn.Send(f...)
	}
}

// limit counts a line against the sender's rate: Rate lines per window
// for a user, who has one conversation, and Rate per conversation it may
// hold (Rate × Capacity) for an agent.
func (s *Service) limit(ctx context.Context, who Sender) error {
	w := s.clock.Now().UnixMilli() / rateWindow.Milliseconds()
	k := s.k.rate(who.key(), w)
	res := s.rc.DoMulti(ctx,
		s.rc.B().Incr().Key(k).Build(),
		s.rc.B().Pexpire().Key(k).Milliseconds(2*rateWindow.Milliseconds()).Build())
	n, err := res[0].AsInt64()
	if err != nil {
		return s.unavailable("rate", err)
	}
	most := int64(s.cfg.Rate)
	if who.Agent {
		most *= int64(s.cfg.Capacity)
	}
	if n > most {
		return ErrTooManyLines
	}
	return nil
}

func (s *Service) userSend(ctx context.Context, who Sender, conn Conn, req SendRequest) (*Ack, error) {
	uid := utoa(who.ID)
	cur, err := s.rc.Do(ctx, s.rc.B().Get().Key(s.k.user(uid)).Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, s.unavailable("find conversation", err)
	}
	if req.ConversationID != "" && req.ConversationID != cur {
		// A conversation the user names must be their live one.
		c, err := s.repo.GetConversation(ctx, parseU(req.ConversationID))
		switch {
		case errors.Is(err, models.ErrNoConversation):
			return nil, ErrNoConversation
		case err != nil:
			return nil, s.unavailable("get conversation", err)
		case c.UserID != who.ID:
			return nil, ErrNotYours
		case cur == "":
			return nil, ErrClosed
		}
		return nil, ErrClosed // an older one of theirs; the live one is another
	}
	var opened *handout
	if cur == "" {
		if opened, err = s.open(ctx, who); err != nil {
			return nil, err
		}
		cur = opened.cid
	}
	line, dup, err := s.store(ctx, who, parseU(cur), req)
	if err != nil {
		if opened != nil {
			// The conversation exists either way: say where it stands, so
			// the retry of this line (which joins it) is not the first news.
			s.announce(ctx, []handout{*opened}, false)
		}
		return nil, err
	}
	ack := ackOf(line)
	send(conn, frame(ack.Type, ack))
	if dup {
		return ack, nil
	}
	if opened != nil {
		s.announce(ctx, []handout{*opened}, false)
	}
	f := lineFrame(line, false)
	s.toUser(ctx, who.ID, f)
	if agent, err := s.rc.Do(ctx, s.rc.B().Hget().Key(s.k.conv(cur)).Field("agent").Build()).ToString(); err == nil && agent != "" {
		s.toAgent(ctx, parseU(agent), f)
	}
	return ack, nil
}

// store writes a line of who into live conversation cid. Should MySQL
// not have the conversation's row, it is put back from Redis first.
func (s *Service) store(ctx context.Context, who Sender, cid uint64, req SendRequest) (*models.ChatLine, bool, error) {
	l := &models.ChatLine{ID: s.newID(), ConversationID: cid, Sender: senderOf(who), SenderID: who.ID,
		SenderName: who.Name, Text: req.Text, CreatedAt: s.clock.Now().UTC()}
	if req.ClientMsgID != "" {
		id := req.ClientMsgID
		l.ClientMsgID = &id
	}
	stored, dup, err := s.repo.InsertLine(ctx, l)
	if errors.Is(err, models.ErrNoConversation) {
		if err = s.restoreRow(ctx, utoa(cid)); err != nil {
			return nil, false, err
		}
		stored, dup, err = s.repo.InsertLine(ctx, l)
	}
	if err != nil {
		return nil, false, s.unavailable("store line", err)
	}
	if !dup {
		s.m.lines.WithLabelValues(l.Sender).Inc()
	}
	return stored, dup, nil
}

func (s *Service) agentSend(ctx context.Context, who Sender, conn Conn, req SendRequest) (*Ack, error) {
	c, err := s.held(ctx, who, req.ConversationID)
	if err != nil {
		return nil, err
	}
	line, dup, err := s.store(ctx, who, c.id, req)
	if err != nil {
		return nil, err
	}
	ack := ackOf(line)
	send(conn, frame(ack.Type, ack))
	if dup {
		return ack, nil
	}
	f := lineFrame(line, false)
	s.toAgent(ctx, who.ID, f)
	s.toUser(ctx, c.user, f)
	if online, err := s.presence.Online(ctx, c.user); err == nil && !online {
		body := fmt.Appendf(nil, `{"conversation_id":%q,"text":%q,"agent":{"id":%q,"name":%q}}`,
			utoa(c.id), truncate(line.Text, 500), utoa(who.ID), who.Name)
		if err := s.inbox.Notify(ctx, c.user, "chat", body, "chat:"+utoa(c.id), "chat:"+utoa(line.ID)); err != nil {
			s.log.Warn("reply to an offline user not put in their inbox", "user", c.user, "line", line.ID, "err", err)
		}
	}
	return ack, nil
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

// liveConv is a live conversation as Redis has it.
type liveConv struct {
	id, user, agent uint64
	status          string
	opened          int64
	reason          string // of its last hand-out
	at              int64  // ms of its last hand-out
}

// live reads conversation cid from Redis; ok is false when it is not live.
func (s *Service) live(ctx context.Context, cid string) (c liveConv, ok bool, err error) {
	m, err := s.rc.Do(ctx, s.rc.B().Hgetall().Key(s.k.conv(cid)).Build()).AsStrMap()
	if err != nil {
		return c, false, s.unavailable("read conversation", err)
	}
	if m["user"] == "" {
		return c, false, nil
	}
	c = liveConv{id: parseU(cid), user: parseU(m["user"]), agent: parseU(m["agent"]), status: m["status"], opened: int64(parseU(m["opened"])),
		reason: m["reason"], at: int64(parseU(m["at"]))}
	return c, true, nil
}

// held returns conversation cid if the agent who holds it, or the error
// to answer: 404 unknown, 409 closed, 403 someone else's.
func (s *Service) held(ctx context.Context, who Sender, cid string) (liveConv, error) {
	if parseU(cid) == 0 {
		return liveConv{}, ErrNoConversation
	}
	c, ok, err := s.live(ctx, cid)
	if err != nil {
		return c, err
	}
	if !ok {
		if _, err := s.repo.GetConversation(ctx, parseU(cid)); errors.Is(err, models.ErrNoConversation) {
			return c, ErrNoConversation
		} else if err != nil {
			return c, s.unavailable("get conversation", err)
		}
		return c, ErrClosed
	}
	if c.agent != who.ID {
		return c, ErrNotYours
	}
	return c, nil
}

func (s *Service) unavailable(what string, err error) error {
	s.log.Error("chat: "+what, "err", err)
	return fmt.Errorf("%s: %v: %w", what, err, ErrUnavailable)
}
