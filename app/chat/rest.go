package chat

import (
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/pushdesk/pushdesk/models"
)

// ConversationView is one item of GET /api/v1/chat/conversations.
type ConversationView struct {
	ID        string    `json:"id"`
	User      UserRef   `json:"user"`
	Agent     *AgentRef `json:"agent"`
	Status    string    `json:"status"`
	Unread    int       `json:"unread"`
	LastMsgAt int64     `json:"last_msg_at"`
	LastText  string    `json:"last_text"`
	OpenedAt  int64     `json:"opened_at"`
	Position  int       `json:"position,omitempty"`
}

// listLimit caps a conversation listing.
const listLimit = 200

// Conversations lists what who may see: a user their own, an agent the
// ones they hold, the waiting ones and the last they held before.
func (s *Service) Conversations(ctx context.Context, who Sender) ([]ConversationView, error) {
	var cs []models.Conversation
	var err error
	if who.Agent {
		cs, err = s.repo.AgentConversations(ctx, who.ID, listLimit)
	} else {
		cs, err = s.repo.UserConversations(ctx, who.ID, listLimit)
	}
	if err != nil {
		return nil, s.unavailable("list conversations", err)
	}
	var unread map[uint64]int
	positions := map[string]int{}
	if who.Agent {
		ids := make([]uint64, 0, len(cs))
		for _, c := range cs {
			if c.Status == models.ConvOpen && c.AgentID != nil && *c.AgentID == who.ID {
				ids = append(ids, c.ID)
			}
		}
		if unread, err = s.repo.AgentUnread(ctx, ids); err != nil {
			return nil, s.unavailable("count unread", err)
		}
		if w, err := s.rc.Do(ctx, s.rc.B().Zrange().Key(s.k.waiting()).Min("0").Max("-1").Build()).AsStrSlice(); err == nil {
			for i, cid := range w {
				positions[cid] = i + 1
			}
		}
	}
	out := make([]ConversationView, 0, len(cs))
	for _, c := range cs {
		v := ConversationView{ID: utoa(c.ID), User: UserRef{ID: utoa(c.UserID)}, Status: c.Status, Unread: unread[c.ID],
			LastMsgAt: c.LastMsgAt.UnixMilli(), LastText: c.LastText, OpenedAt: c.OpenedAt.UnixMilli(), Position: positions[utoa(c.ID)]}
		if c.AgentID != nil {
			v.Agent = &AgentRef{ID: utoa(*c.AgentID), Name: c.AgentName}
		}
		if who.Agent && c.Status != models.ConvClosed {
			online, _ := s.presence.Online(ctx, c.UserID)
			v.User.Online = &online
		}
		out = append(out, v)
	}
	slices.SortStableFunc(out, func(a, b ConversationView) int { return cmp.Compare(b.LastMsgAt, a.LastMsgAt) })
	return out, nil
}

// LinePage is GET /api/v1/chat/conversations/{id}/messages.
type LinePage struct {
	Messages []Line  `json:"messages"`
	Next     *string `json:"next"`
}

// Messages pages conversation cid's lines, newest first, for its user or
// an agent who holds or held it (or any agent while it waits).
func (s *Service) Messages(ctx context.Context, who Sender, cid string, before uint64, limit int) (*LinePage, error) {
	id := parseU(cid)
	if id == 0 {
		return nil, ErrNoConversation
	}
	c, err := s.repo.GetConversation(ctx, id)
	if errors.Is(err, models.ErrNoConversation) {
		return nil, ErrNoConversation
	}
	if err != nil {
		return nil, s.unavailable("get conversation", err)
	}
	switch {
	case !who.Agent && c.UserID != who.ID:
		return nil, ErrNotYours
	case who.Agent && c.Status != models.ConvWaiting:
		held, err := s.repo.Held(ctx, id, who.ID)
		if err != nil {
			return nil, s.unavailable("check holder", err)
		}
		if !held {
			return nil, ErrNotYours
		}
	}
	lines, err := s.repo.Lines(ctx, id, before, limit+1)
	if err != nil {
		return nil, s.unavailable("list lines", err)
	}
	page := &LinePage{Messages: make([]Line, 0, min(len(lines), limit))}
	if len(lines) > limit {
		lines = lines[:limit]
		next := utoa(lines[limit-1].ID)
		page.Next = &next
	}
	for i := range lines {
		page.Messages = append(page.Messages, lineOf(&lines[i]))
	}
	return page, nil
}

// AgentView is one item of GET /api/v1/chat/agents.
type AgentView struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Status   string `json:"status"`
	Load     int    `json:"load"`
	Capacity int    `json:"capacity"`
}

// Agents lists the agents connected now.
func (s *Service) Agents(ctx context.Context) ([]AgentView, error) {
	ids, err := s.rc.Do(ctx, s.rc.B().Smembers().Key(s.k.connected()).Build()).AsStrSlice()
	if err != nil {
		return nil, s.unavailable("list agents", err)
	}
	out := make([]AgentView, 0, len(ids))
	for _, a := range ids {
		res := s.rc.DoMulti(ctx, s.rc.B().Hmget().Key(s.k.agent(a)).Field("name", "status").Build(), s.rc.B().Scard().Key(s.k.held(a)).Build())
		f, _ := res[0].AsStrSlice()
		load, _ := res[1].AsInt64()
		v := AgentView{ID: a, Status: "online", Load: int(load), Capacity: s.cfg.Capacity}
		if len(f) == 2 {
			v.Name = f[0]
			if f[1] != "" {
				v.Status = f[1]
			}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b AgentView) int { return cmp.Compare(parseU(a.ID), parseU(b.ID)) })
	return out, nil
}
