package chat

import (
	"context"

	"github.com/pushdesk/pushdesk/app/hub"
)

// AgentConnected counts a new connection of agent and sends it, after
// hello, its status and a chat.assigned (with history) per conversation it
// holds. A disabled console login gets ErrAgentDisabled.
func (s *Service) AgentConnected(ctx context.Context, who Sender, conn Conn) error {
	if disabled, err := s.repo.AgentDisabled(ctx, who.ID); err != nil {
		return s.unavailable("check agent", err)
	} else if disabled {
		return ErrAgentDisabled
	}
	a := utoa(who.ID)
	res, err := s.run(ctx, upScript, a, s.instance, who.Name, itoa(s.nowMS()), itoa(s.cfg.Settle.Milliseconds())).ToArray()
	if err != nil || len(res) != 3 {
		return s.unavailable("agent up", err)
	}
	s.mu.Lock()
	la := s.local[who.ID]
	la.name, la.conns = who.Name, la.conns+1
	s.local[who.ID] = la
	s.mu.Unlock()
	status, _ := res[0].ToString()
	load, _ := res[1].AsInt64()
	send(conn, frame("agent.status", statusFrame{Type: "agent.status", Status: status, Load: int(load), Capacity: s.cfg.Capacity}))
	// Counted up now: from here on a failure must not fail the connection
	// (its disconnect would never count it down); the console's REST list
	// shows what a failed read here leaves out.
	held, err := s.rc.Do(ctx, s.rc.B().Smembers().Key(s.k.held(a)).Build()).AsStrSlice()
	if err != nil {
		s.log.Warn("chat: held conversations not sent to a new agent connection", "agent", who.ID, "err", err)
	}
	for _, cid := range held {
		c, ok, err := s.live(ctx, cid)
		if err != nil || !ok {
			continue
		}
		frames := append([]hub.Frame{s.assignedToAgent(ctx, cid, c.user, c.opened)}, s.history(ctx, cid)...)
		send(conn, frames...)
	}
	if fresh, _ := res[2].AsInt64(); fresh == 1 {
		s.Kick()
	}
	return nil
}

// AgentDisconnected counts one connection of agent less. With none left
// the agent gets nothing new at once; its conversations move once the
// grace has passed without a new connection (see loop).
func (s *Service) AgentDisconnected(ctx context.Context, agent uint64) {
	s.mu.Lock()
	if la, ok := s.local[agent]; ok {
		if la.conns--; la.conns <= 0 {
			delete(s.local, agent)
		} else {
			s.local[agent] = la
		}
	}
	s.mu.Unlock()
	if err := s.run(ctx, downScript, utoa(agent), s.instance, itoa(s.nowMS())).Error(); err != nil {
		s.log.Warn("chat: agent down not recorded; the instance sweep will", "agent", agent, "err", err)
	}
}

// UserConnected sends a user's new connection the state of their live
// conversation, and tells its agent the user is here.
func (s *Service) UserConnected(ctx context.Context, uid uint64, conn Conn) error {
	cid, err := s.rc.Do(ctx, s.rc.B().Get().Key(s.k.user(utoa(uid))).Build()).ToString()
	if err != nil {
		return nil // none (or Redis trouble: the client asks again with the REST list)
	}
	c, ok, err := s.live(ctx, cid)
	if err != nil || !ok {
		return err
	}
	if c.agent == 0 {
		pos, err := s.rc.Do(ctx, s.rc.B().Zrank().Key(s.k.waiting()).Member(cid).Build()).AsInt64()
		if err == nil {
			send(conn, frame("chat.queued", queuedFrame{Type: "chat.queued", ConversationID: cid, Position: int(pos) + 1, Since: c.opened}))
		}
		return nil
	}
	send(conn, frame("chat.assigned", assignedFrame{Type: "chat.assigned", ConversationID: cid, Status: "open", OpenedAt: c.opened,
		Agent: &AgentRef{ID: utoa(c.agent), Name: s.agentName(ctx, c.agent)}}))
	s.userPresence(ctx, cid, c, true)
	return nil
}

// UserDisconnected tells the agent of the user's live conversation when
// the user's last connection is gone.
func (s *Service) UserDisconnected(ctx context.Context, uid uint64) {
	if online, err := s.presence.Online(ctx, uid); err != nil || online {
		return
	}
	cid, err := s.rc.Do(ctx, s.rc.B().Get().Key(s.k.user(utoa(uid))).Build()).ToString()
	if err != nil {
		return
	}
	if c, ok, err := s.live(ctx, cid); err == nil && ok && c.agent != 0 {
		s.userPresence(ctx, cid, c, false)
	}
}

func (s *Service) userPresence(ctx context.Context, cid string, c liveConv, online bool) {
	s.toAgent(ctx, c.agent, frame("chat.presence", presenceFrame{Type: "chat.presence", ConversationID: cid,
		User: UserRef{ID: utoa(c.user), Online: &online}}))
}

// SetStatus makes an agent away (no new conversations) or online again.
func (s *Service) SetStatus(ctx context.Context, who Sender, status string) error {
	if status != "online" && status != "away" {
		return ErrBadStatus
	}
	res, err := s.run(ctx, statusScript, utoa(who.ID), status, itoa(s.nowMS()), itoa(s.cfg.Settle.Milliseconds())).AsIntSlice()
	if err != nil || len(res) != 2 {
		return s.unavailable("agent status", err)
	}
	s.log.Info("chat agent status", "agent", who.ID, "status", status)
	s.toAgent(ctx, who.ID, frame("agent.status", statusFrame{Type: "agent.status", Status: status, Load: int(res[0]), Capacity: s.cfg.Capacity}))
	if status == "online" {
		s.Kick()
	}
	return nil
}

// sendStatus pushes an agent its status and load.
func (s *Service) sendStatus(ctx context.Context, agent uint64) {
	a := utoa(agent)
	res := s.rc.DoMulti(ctx,
		s.rc.B().Hget().Key(s.k.agent(a)).Field("status").Build(),
		s.rc.B().Scard().Key(s.k.held(a)).Build())
	status, err := res[0].ToString()
	if err != nil {
		status = "online"
	}
	load, _ := res[1].AsInt64()
	s.toAgent(ctx, agent, frame("agent.status", statusFrame{Type: "agent.status", Status: status, Load: int(load), Capacity: s.cfg.Capacity}))
}
