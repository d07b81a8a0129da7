package chat

import (
	"context"

	"github.com/redis/rueidis"
)

// Redis is the live truth of the desk, and frames tell clients about it.
// What a failure leaves behind is put right here: announcements whose
// push failed are sent again (retell).

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
