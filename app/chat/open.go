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
// record is repaired by the loop.
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
		s.dropConversation(ctx, c.ID)
		return nil, s.unavailable("open", err)
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
