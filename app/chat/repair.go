package chat

import (
	"context"
	"time"

	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// Redis is the live truth of the desk; MySQL follows it, and frames
// tell clients about it. What a failure leaves behind is put right here:
// announcements whose push failed are sent again (retell), and rows
// MySQL has wrong are made to say what Redis says (repair).

// tellLater notes that conversation cid's hand-out (or queue place) may
// not have reached its user or agent; the loop announces it again.
func (s *Service) tellLater(ctx context.Context, cid string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := s.rc.Do(ctx, s.rc.B().Hset().Key(s.k.tell()).FieldValue().FieldValue(cid, itoa(s.nowMS())).Build()).Error(); err != nil {
		s.log.Error("chat: announcement to retry not noted; clients learn on reconnect", "conversation", cid, "err", err)
	}
}

// retell announces again what tellLater noted: to the user chat.assigned
// (or chat.queued with the place), to the agent chat.assigned with the
// conversation's lines. A push failing again is noted again.
func (s *Service) retell(ctx context.Context) {
	cids, err := s.run(ctx, retellScript, itoa(s.nowMS()), itoa(orphanAge.Milliseconds())).AsStrSlice()
	if err != nil {
		s.log.Warn("chat: announcements to retry not read", "err", err)
		return
	}
	for _, cid := range cids {
		c, ok, err := s.live(ctx, cid)
		if err != nil {
			s.tellLater(ctx, cid)
			continue
		}
		if !ok {
			continue
		}
		h := handout{cid: cid, user: c.user, agent: c.agent, opened: timeMS(c.opened)}
		if h.agent == 0 {
			pos, err := s.rc.Do(ctx, s.rc.B().Zrank().Key(s.k.waiting()).Member(cid).Build()).AsInt64()
			if rueidis.IsRedisNil(err) {
				continue // handed out meanwhile: that hand-out announces itself
			}
			if err != nil {
				s.tellLater(ctx, cid)
				continue
			}
			h.position = int(pos) + 1
		}
		s.log.Info("chat: announcing again", "conversation", cid, "user", c.user, "agent", c.agent)
		s.announce(ctx, []handout{h}, true)
	}
}

// repair runs reconcile on one instance at a time, at most once per
// repairTicks ticks across the desk.
func (s *Service) repair(ctx context.Context) {
	period := time.Duration(repairTicks) * s.cfg.Tick
	if s.rc.Do(ctx, s.rc.B().Set().Key(s.k.repairLock()).Value(s.instance).Nx().Px(period).Build()).Error() != nil {
		return // another instance's turn, or Redis is down
	}
	s.reconcile(ctx)
}

// repairTicks is how many ticks pass between repairs of MySQL.
const repairTicks = 15

// reconcileBatch is how many conversations one state.lua call reads.
const reconcileBatch = 500

// reconcile makes every conversation MySQL has as waiting or open say
// what Redis says: held by Redis's agent (recorded with the hand-out's
// own reason and time, so a late record is the record it would have
// been), back in the waiting pool, or — not live in Redis for longer
// than any open takes — closed, or deleted when it never was handed out
// and holds no line (an open that failed). A hand-out younger than
// recordAge is left to its own record, and a row is only changed while
// it still is as read, so a hand-out recorded meanwhile stands. Nothing
// is done while Redis's state is lost: ensureState rebuilds it first.
func (s *Service) reconcile(ctx context.Context) {
	rows, err := s.repo.Active(ctx)
	if err != nil {
		s.log.Warn("chat: repair could not read MySQL", "err", err)
		return
	}
	for len(rows) > 0 {
		batch := rows[:min(len(rows), reconcileBatch)]
		rows = rows[len(batch):]
		cids := make([]string, len(batch))
		for i, r := range batch {
			cids[i] = utoa(r.ID)
		}
		st, err := s.run(ctx, stateScript, cids...).AsStrSlice()
		if err != nil || len(st) != 1+4*len(batch) {
			s.log.Warn("chat: repair could not read Redis", "err", err)
			return
		}
		if st[0] != "1" {
			return
		}
		for i := range batch {
			f := st[1+4*i:]
			s.reconcileOne(ctx, &batch[i], f[0], parseU(f[1]), f[2], int64(parseU(f[3])))
		}
	}
}

func (s *Service) reconcileOne(ctx context.Context, r *models.Conversation, status string, agent uint64, reason string, at int64) {
	var what string
	var changed bool
	var err error
	switch {
	case status == "":
		if s.clock.Now().Sub(r.OpenedAt) < orphanAge {
			return
		}
		if r.Status == models.ConvWaiting && r.AgentID == nil && r.AssignedAt == nil && r.LastLineID == 0 {
			what, changed, err = "drop", true, s.repo.DeleteConversation(ctx, r.ID)
		} else {
			what, changed, err = "close", true, s.repo.Close(ctx, r.ID, s.clock.Now().UTC())
		}
	case at > 0 && s.nowMS()-at < recordAge.Milliseconds():
		return // just handed out: its own record may be under way
	case agent != 0:
		if r.Status == models.ConvOpen && r.AgentID != nil && *r.AgentID == agent {
			return
		}
		if reason == "" {
			reason = ReasonRepair
		}
		when := s.clock.Now()
		if at > 0 {
			when = timeMS(at)
		}
		what = "assign"
		changed, err = s.repo.AssignIf(ctx, r.ID, agent, s.agentName(ctx, agent), reason, when.UTC(), r.Status, r.AgentID)
	default:
		if r.Status == models.ConvWaiting {
			return
		}
		what = "unassign"
		changed, err = s.repo.UnassignIf(ctx, r.ID, r.AgentID)
	}
	if err != nil {
		s.log.Warn("chat: repair of a MySQL row failed; next time", "conversation", r.ID, "repair", what, "err", err)
		return
	}
	if !changed {
		return
	}
	s.m.repairs.WithLabelValues(what).Inc()
	s.log.Warn("chat: MySQL row repaired from Redis", "conversation", r.ID, "repair", what, "was", r.Status, "agent", agent)
	// A row that missed its hand-out or close may mean the answer of the
	// script was lost, and with it the frames: send them (again).
	switch what {
	case "assign", "unassign":
		s.tellLater(ctx, utoa(r.ID))
	case "close":
		f := closedFrame(utoa(r.ID))
		s.toUser(ctx, r.UserID, f)
		if r.AgentID != nil {
			s.toAgent(ctx, *r.AgentID, f)
		}
	}
}

// restoreRow puts back the MySQL row of live conversation cid, which
// MySQL lost: a line is about to be stored into it.
func (s *Service) restoreRow(ctx context.Context, cid string) error {
	c, ok, err := s.live(ctx, cid)
	if err != nil {
		return err
	}
	if !ok {
		return ErrClosed
	}
	opened := timeMS(c.opened)
	row := &models.Conversation{ID: c.id, UserID: c.user, Status: models.ConvWaiting, OpenedAt: opened, LastMsgAt: opened}
	if err := s.repo.RestoreConversation(ctx, row); err != nil {
		return s.unavailable("restore conversation", err)
	}
	if c.agent != 0 {
		reason, at := c.reason, timeMS(c.at)
		if reason == "" || c.at == 0 {
			reason, at = ReasonRepair, s.clock.Now()
		}
		if err := s.repo.Assign(ctx, c.id, c.agent, s.agentName(ctx, c.agent), reason, at.UTC()); err != nil {
			return s.unavailable("restore conversation", err)
		}
	}
	s.m.repairs.WithLabelValues("restore").Inc()
	s.log.Warn("chat: live conversation missing from MySQL, its row restored from Redis", "conversation", cid)
	return nil
}
