package chat

import (
	"context"
	"time"

	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// open starts a conversation for who under the per-user lock: a second
// open racing it gets ErrAssignLocked.
//
// The row goes into MySQL first and open.lua makes it live; once Redis
// has it, it stands (Redis is the live truth) and what MySQL fails to
// record is repaired by the loop. The row is deleted only when it
// certainly never became live.
func (s *Service) open(ctx context.Context, who Sender) (*handout, error) {
	uid := utoa(who.ID)
	token := utoa(s.newID())
	err := s.rc.Do(ctx, s.rc.B().Set().Key(s.k.lock(uid)).Value(token).Nx().Px(openLockTTL).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return nil, ErrAssignLocked
	}
	if err != nil {
		return nil, s.unavailable("open lock", err)
	}
	defer s.unlock(uid, token)
	now := s.clock.Now()
	c := &models.Conversation{ID: s.newID(), UserID: who.ID, Status: models.ConvWaiting, OpenedAt: now, LastMsgAt: now}
	if err := s.repo.CreateConversation(ctx, c); err != nil {
		// An insert whose answer was lost may have landed: the loop's
		// repair drops such a row (it never became live).
		return nil, s.unavailable("create conversation", err)
	}
	cid := utoa(c.ID)
	res, err := s.run(ctx, openScript, cid, uid, itoa(now.UnixMilli()), itoa(int64(s.cfg.Capacity))).AsStrSlice()
	if err != nil || len(res) != 2 {
		return s.settleOpen(ctx, who, c, err)
	}
	if res[0] == "exists" { // the lock expired under a slow open: join theirs
		s.dropConversation(ctx, c.ID)
		return &handout{cid: res[1], user: who.ID, joined: true}, nil
	}
	h := handout{cid: cid, user: who.ID, opened: now, at: now, reason: res[0]}
	if res[0] == "queued" {
		h.position = int(parseU(res[1]))
		return &h, nil
	}
	h.agent = parseU(res[1])
	s.record(ctx, &h)
	return &h, nil
}

// settleOpen finds out what an open.lua that failed with err did. A
// timeout does not mean the script did not run (its answer may be what
// was lost), so it reads the user's conversation back and goes on from
// there: theirs is ours (the script ran), another (a racing open won:
// join it), or none. Only with none after a refusal Redis answered is
// the row certainly dead and deleted; with none after a timeout the
// script may still run, so the row stays, noted for announcing should it
// go live, and the loop's repair drops it should it not.
func (s *Service) settleOpen(ctx context.Context, who Sender, c *models.Conversation, err error) (*handout, error) {
	_, refused := rueidis.IsRedisErr(err)
	cid := utoa(c.ID)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	res := s.rc.DoMulti(rctx,
		s.rc.B().Get().Key(s.k.user(utoa(who.ID))).Build(),
		s.rc.B().Hgetall().Key(s.k.conv(cid)).Build(),
		s.rc.B().Zrank().Key(s.k.waiting()).Member(cid).Build())
	cur, rerr := res[0].ToString()
	if rueidis.IsRedisNil(rerr) {
		cur, rerr = "", nil
	}
	conv, cerr := res[1].AsStrMap()
	switch {
	case rerr != nil || (cur == cid && (cerr != nil || conv["user"] == "")):
		s.tellLater(ctx, cid)
		s.lostAnswer()
		s.log.Warn("chat: open's outcome unknown, left to the loop", "conversation", cid, "user", who.ID, "err", rerr)
	case cur == cid:
		s.log.Warn("chat: open's answer lost, but it ran", "conversation", cid, "user", who.ID, "err", err)
		h := handout{cid: cid, user: who.ID, opened: c.OpenedAt, at: c.OpenedAt, agent: parseU(conv["agent"]), reason: conv["reason"]}
		if at := int64(parseU(conv["at"])); at > 0 {
			h.at = timeMS(at)
		}
		if h.reason == "" {
			h.reason = ReasonRepair
		}
		if h.agent == 0 {
			pos, _ := res[2].AsInt64()
			h.reason, h.position = "queued", int(pos)+1
			return &h, nil
		}
		s.record(ctx, &h)
		return &h, nil
	case cur != "":
		s.dropConversation(ctx, c.ID)
		return &handout{cid: cur, user: who.ID, joined: true}, nil
	case refused:
		s.dropConversation(ctx, c.ID)
	default:
		s.tellLater(ctx, cid)
		s.lostAnswer()
	}
	return nil, s.unavailable("open", err)
}

// dropConversation deletes the row of an open that never became live.
func (s *Service) dropConversation(ctx context.Context, id uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := s.repo.DeleteConversation(ctx, id); err != nil {
		s.log.Warn("chat: dead open's row not deleted; the loop's repair will", "conversation", id, "err", err)
	}
}

var unlockScript = rueidis.NewLuaScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

func (s *Service) unlock(uid, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	unlockScript.Exec(ctx, s.rc, []string{s.k.lock(uid)}, []string{token})
}
