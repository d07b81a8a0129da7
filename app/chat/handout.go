package chat

import (
	"context"
	"slices"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/redis/rueidis"
)

// Reasons a conversation was handed to an agent (logged, counted, and in
// chat_holds.reason).
const (
	ReasonSticky      = "sticky"
	ReasonLeastLoaded = "least_loaded"
	ReasonBacklog     = "backlog"
	ReasonTransfer    = "transfer"
	ReasonReassign    = "reassign"
	// ReasonRepair is a hand-out the loop's repair found in Redis without
	// a reason of its own (state from before reasons were kept there).
	ReasonRepair = "repair"
)

// handout is one conversation's new place: an agent, or the queue.
type handout struct {
	cid      string
	user     uint64
	agent    uint64 // 0: waiting
	from     uint64 // the agent it left, for transfers and reassignments
	reason   string // a Reason…, or "queued"
	position int
	opened   time.Time
	at       time.Time // when Redis handed it out (the script's now)
	joined   bool      // an open that found the user's conversation already there
}

// record logs and counts a hand-out and writes it to MySQL. Redis already
// has it, so the hand-out stands (and is announced) whether the write
// succeeds or not: it is tried a few times, and a row still wrong is made
// to say what Redis says by the loop's repair.
func (s *Service) record(ctx context.Context, h *handout) {
	s.m.assignments.WithLabelValues(h.reason).Inc()
	if !h.opened.IsZero() && h.reason != ReasonTransfer && h.reason != ReasonReassign {
		s.m.wait.Observe(s.clock.Now().Sub(h.opened).Seconds())
	}
	s.log.Info("chat hand-out", "conversation", h.cid, "user", h.user, "agent", h.agent, "reason", h.reason, "from", h.from)
	if h.at.UnixMilli() <= 0 {
		h.at = s.clock.Now()
	}
	name := s.agentName(ctx, h.agent)
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		if err = s.repo.Assign(ctx, parseU(h.cid), h.agent, name, h.reason, h.at.UTC()); err == nil {
			return
		}
	}
	s.log.Error("chat: hand-out not recorded in MySQL; the loop's repair will", "conversation", h.cid, "agent", h.agent, "err", err)
}

func (s *Service) agentName(ctx context.Context, agent uint64) string {
	name, _ := s.rc.Do(ctx, s.rc.B().Hget().Key(s.k.agent(utoa(agent))).Field("name").Build()).ToString()
	return name
}

// announce tells users and agents about hand-outs: the user chat.assigned
// or chat.queued, the agent chat.assigned (with the earlier lines when
// history is set), the agent it left chat.transferred. A hand-out whose
// push to its user or agent failed is noted, and the loop announces it
// again (retell).
func (s *Service) announce(ctx context.Context, hs []handout, history bool) {
	for _, h := range hs {
		if h.joined {
			continue
		}
		opened := h.opened.UnixMilli()
		if h.agent == 0 {
			if !s.toUser(ctx, h.user, frame("chat.queued", queuedFrame{Type: "chat.queued", ConversationID: h.cid, Position: h.position, Since: opened})) {
				s.tellLater(ctx, h.cid)
			}
			continue
		}
		ref := &AgentRef{ID: utoa(h.agent), Name: s.agentName(ctx, h.agent)}
		told := s.toUser(ctx, h.user, frame("chat.assigned", assignedFrame{Type: "chat.assigned", ConversationID: h.cid, Status: "open", OpenedAt: opened, Agent: ref}))
		frames := []hub.Frame{s.assignedToAgent(ctx, h.cid, h.user, opened)}
		if history {
			frames = append(frames, s.history(ctx, h.cid)...)
		}
		if !s.toAgent(ctx, h.agent, frames...) || !told {
			s.tellLater(ctx, h.cid)
		}
		s.sendStatus(ctx, h.agent)
		if h.from != 0 {
			s.toAgent(ctx, h.from, frame("chat.transferred", convFrame{Type: "chat.transferred", ConversationID: h.cid, ToAgent: utoa(h.agent)}))
			s.sendStatus(ctx, h.from)
		}
	}
}

func (s *Service) assignedToAgent(ctx context.Context, cid string, user uint64, opened int64) hub.Frame {
	online, _ := s.presence.Online(ctx, user)
	return frame("chat.assigned", assignedFrame{Type: "chat.assigned", ConversationID: cid, Status: "open", OpenedAt: opened,
		User: &UserRef{ID: utoa(user), Online: &online}})
}

// HistoryLimit is how many earlier lines an agent is sent with a
// conversation; the console pages further back through REST.
const HistoryLimit = 100

// history is conversation cid's last lines as replayed chat.msg frames,
// oldest first.
func (s *Service) history(ctx context.Context, cid string) []hub.Frame {
	lines, err := s.repo.Lines(ctx, parseU(cid), 0, HistoryLimit)
	if err != nil {
		s.log.Warn("chat history not sent", "conversation", cid, "err", err)
		return nil
	}
	slices.Reverse(lines)
	out := make([]hub.Frame, len(lines))
	for i := range lines {
		out[i] = lineFrame(&lines[i], true)
	}
	return out
}

// toUser pushes frames to every connection of uid; false when that failed.
func (s *Service) toUser(ctx context.Context, uid uint64, frames ...hub.Frame) bool {
	if err := s.push.PushToUser(ctx, uid, frames...); err != nil {
		s.log.Warn("chat push to user", "user", uid, "err", err)
		return false
	}
	return true
}

// toAgent pushes frames to every connection of agent; false when that failed.
func (s *Service) toAgent(ctx context.Context, agent uint64, frames ...hub.Frame) bool {
	if err := s.push.PushToUser(ctx, AgentKey(agent), frames...); err != nil {
		s.log.Warn("chat push to agent", "agent", agent, "err", err)
		return false
	}
	return true
}

// requeue tells every waiting user their position (after the queue
// moved). The first maxPositions are told; the rest learn on the next move.
func (s *Service) requeue(ctx context.Context) {
	const maxPositions = 1000
	ids, err := s.rc.Do(ctx, s.rc.B().Zrange().Key(s.k.waiting()).Min("0").Max(itoa(maxPositions-1)).Withscores().Build()).AsZScores()
	if err != nil || len(ids) == 0 {
		return
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, z := range ids {
		cmds[i] = s.rc.B().Hget().Key(s.k.conv(z.Member)).Field("user").Build()
	}
	for i, r := range s.rc.DoMulti(ctx, cmds...) {
		u, err := r.ToString()
		if err != nil {
			continue
		}
		s.toUser(ctx, parseU(u), frame("chat.queued", queuedFrame{Type: "chat.queued", ConversationID: ids[i].Member, Position: i + 1, Since: int64(ids[i].Score)}))
	}
}
