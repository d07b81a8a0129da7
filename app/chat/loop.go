package chat

import (
	"context"
	"time"

	"github.com/redis/rueidis"
)

// Start runs the background loop: hand-outs of waiting conversations,
// expired graces, dead instances' agents, the gauges, and rebuilding
// Redis's state from MySQL when it was lost. Every instance runs one;
// the scripts make their work safe to do twice.
func (s *Service) Start() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s.ensureState(ctx) // before this instance takes any chat traffic
	cancel()
	s.wg.Add(1)
	go s.loop()
}

// Shutdown stops the loop. The agents' connections are counted down by
// AgentDisconnected as they close (before this) or, should that fail, by
// the sweep of another instance.
func (s *Service) Shutdown() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
}

// Kick asks the loop to hand out waiting conversations now (an agent
// came, came back or has room).
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sweepEvery is how many ticks pass between looks at dead instances, at
// lost state and at the gauges.
const sweepEvery = 3

func (s *Service) loop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	var settle *time.Timer
	for n := 0; ; n++ {
		select {
		case <-s.stop:
			if settle != nil {
				settle.Stop()
			}
			return
		case <-s.kick:
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if lost := s.lost.Load(); lost != 0 && s.nowMS()-lost > recordAge.Milliseconds() && s.lost.CompareAndSwap(lost, 0) {
				s.reconcile(ctx)
			}
			s.reap(ctx)
			if n%sweepEvery == 0 {
				s.ensureState(ctx)
				s.sweepDead(ctx)
				s.retell(ctx)
				s.gauges(ctx)
			}
			if n%repairTicks == repairTicks-1 {
				s.repair(ctx)
			}
			cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if wait := s.distribute(ctx); wait > 0 {
			if settle != nil {
				settle.Stop()
			}
			settle = time.AfterFunc(wait, s.Kick)
		}
		cancel()
	}
}

// distribute hands out what waits; it returns how long the settle window
// still runs when that holds the hand-out back.
func (s *Service) distribute(ctx context.Context) time.Duration {
	res, err := s.run(ctx, distScript, itoa(s.nowMS()), itoa(int64(s.cfg.Capacity)), "500").AsStrSlice()
	if err != nil || len(res) == 0 {
		if err != nil {
			s.log.Warn("chat: hand-out failed", "err", err)
			s.answerLost(err)
		}
		return 0
	}
	if res[0] == "settle" {
		return time.Duration(parseU(res[1]))*time.Millisecond + 10*time.Millisecond
	}
	var hs []handout
	for i := 1; i+1 < len(res); i += 2 {
		c, ok, err := s.live(ctx, res[i])
		if err != nil {
			s.tellLater(ctx, res[i])
			s.lostAnswer()
		}
		if err != nil || !ok {
			continue
		}
		h := handout{cid: res[i], user: c.user, agent: parseU(res[i+1]), reason: ReasonBacklog, opened: timeMS(c.opened), at: timeMS(c.at)}
		s.record(ctx, &h)
		hs = append(hs, h)
	}
	if len(hs) > 0 {
		s.announce(ctx, hs, true)
		s.requeue(ctx)
	}
	return 0
}

// answerLost notes a script error that may hide a script that ran (a
// timeout, a broken connection, not an error Redis answered): its
// hand-outs were neither recorded nor announced, so the next tick
// reconciles MySQL with Redis, which announces what it repairs.
func (s *Service) answerLost(err error) {
	if _, refused := rueidis.IsRedisErr(err); !refused {
		s.lostAnswer()
	}
}

// lostAnswer asks for a reconcile once what was lost is older than
// recordAge (the repair leaves younger hand-outs alone).
func (s *Service) lostAnswer() { s.lost.CompareAndSwap(0, s.nowMS()) }

// reap moves the conversations of agents whose grace ran out.
func (s *Service) reap(ctx context.Context) {
	res, err := s.run(ctx, reapScript, itoa(s.nowMS()), itoa(s.cfg.Grace.Milliseconds()), itoa(int64(s.cfg.Capacity))).AsStrSlice()
	if err != nil {
		s.log.Warn("chat: grace check failed", "err", err)
		s.answerLost(err)
		return
	}
	var hs []handout
	queued := false
	for i := 0; i+2 < len(res); i += 3 {
		// Moved off its agent, to another or back to waiting: Redis did
		// it, whatever happens below.
		s.m.reassigned.Inc()
		c, ok, err := s.live(ctx, res[i])
		if err != nil {
			s.tellLater(ctx, res[i])
			s.lostAnswer()
		}
		if err != nil || !ok {
			continue
		}
		h := handout{cid: res[i], user: c.user, agent: parseU(res[i+2]), from: parseU(res[i+1]), reason: ReasonReassign, opened: timeMS(c.opened), at: timeMS(c.at)}
		if h.agent == 0 {
			queued = true
			s.log.Info("chat back to waiting", "conversation", h.cid, "from", h.from)
			if err := s.repo.Unassign(ctx, c.id); err != nil {
				s.log.Error("chat: unassign not recorded; the loop's repair will", "conversation", h.cid, "err", err)
			}
			continue
		}
		s.record(ctx, &h)
		hs = append(hs, h)
	}
	s.announce(ctx, hs, true)
	if queued {
		s.requeue(ctx)
	}
}

// sweepDead forgets the agent connections of instances that died.
func (s *Service) sweepDead(ctx context.Context) {
	insts, err := s.rc.Do(ctx, s.rc.B().Smembers().Key(s.k.insts()).Build()).AsStrSlice()
	if err != nil {
		return
	}
	for _, inst := range insts {
		if inst == s.instance {
			continue
		}
		if alive, err := s.insts.Alive(ctx, inst); err != nil || alive {
			continue
		}
		gone, err := s.run(ctx, sweepScript, inst, itoa(s.nowMS())).AsStrSlice()
		if err != nil {
			s.log.Warn("chat: sweep of a dead instance failed", "dead", inst, "err", err)
			continue
		}
		s.log.Warn("chat: instance is gone, its agents count as disconnected", "dead", inst, "agents", gone)
	}
}

func (s *Service) gauges(ctx context.Context) {
	res := s.rc.DoMulti(ctx, s.rc.B().Zcard().Key(s.k.waiting()).Build(), s.rc.B().Get().Key(s.k.nconv()).Build())
	if n, err := res[0].AsInt64(); err == nil {
		s.m.waiting.Set(float64(n))
	}
	if n, err := res[1].AsInt64(); err == nil {
		s.m.live.Set(float64(n))
	}
}

// ensureState rebuilds the desk's live state from MySQL when Redis lost
// it (a restart without persistence), and re-counts this instance's agent
// connections when Redis no longer has them.
func (s *Service) ensureState(ctx context.Context) {
	res := s.rc.DoMulti(ctx,
		s.rc.B().Exists().Key(s.k.built()).Build(),
		s.rc.B().Sismember().Key(s.k.insts()).Member(s.instance).Build())
	if built, err := res[0].AsInt64(); err == nil && built == 0 {
		s.rebuild(ctx)
	}
	s.mu.Lock()
	local := make(map[uint64]localAgent, len(s.local))
	for id, la := range s.local {
		local[id] = la
	}
	s.mu.Unlock()
	if listed, err := res[1].AsInt64(); err != nil || listed == 1 || len(local) == 0 {
		return
	}
	s.log.Warn("chat: agent connections missing from Redis, counting them again", "agents", len(local))
	for id, la := range local {
		for range la.conns {
			s.run(ctx, upScript, utoa(id), s.instance, la.name, itoa(s.nowMS()), itoa(s.cfg.Settle.Milliseconds()))
		}
	}
}

func (s *Service) rebuild(ctx context.Context) {
	err := s.rc.Do(ctx, s.rc.B().Set().Key(s.k.rebuildLock()).Value(s.instance).Nx().Px(rebuildLockTT).Build()).Error()
	if err != nil {
		return // another instance is at it, or Redis is down
	}
	cs, err := s.repo.Active(ctx)
	if err != nil {
		s.log.Warn("chat: rebuild from MySQL failed, will retry", "err", err)
		s.rc.Do(ctx, s.rc.B().Del().Key(s.k.rebuildLock()).Build())
		return
	}
	for _, c := range cs {
		agent := ""
		if c.Status == "open" && c.AgentID != nil {
			agent = utoa(*c.AgentID)
		}
		if err := s.run(ctx, restoreScript, utoa(c.ID), utoa(c.UserID), agent, itoa(c.OpenedAt.UnixMilli())).Error(); err != nil {
			s.log.Warn("chat: rebuild failed, will retry", "err", err)
			s.rc.Do(ctx, s.rc.B().Del().Key(s.k.rebuildLock()).Build())
			return
		}
	}
	s.rc.DoMulti(ctx, s.rc.B().Set().Key(s.k.built()).Value("1").Build(), s.rc.B().Del().Key(s.k.rebuildLock()).Build())
	if len(cs) > 0 {
		s.log.Warn("chat: live state rebuilt from MySQL", "conversations", len(cs))
	}
}

func timeMS(ms int64) time.Time { return time.UnixMilli(ms) }
