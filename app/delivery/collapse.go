package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
)

// undoCounts drops the counter caches of uids (counted for messages that
// were not stored; the next read rebuilds them from MySQL) and clears the
// messages' in-flight marks.
func (s *Service) undoCounts(ctx context.Context, uids, ids []uint64) {
	ctx = context.WithoutCancel(ctx)
	if err := s.Reset(ctx, uids...); err != nil {
		s.Log.Warn("reset counters after a failed delivery", "err", err) // they heal within unreadTTL
	}
	s.clearInFlight(ctx, uids, ids)
}

// deliverCollapsed stores m through the collapse upsert, then counts it
// (only if it made a new message) and pushes the resulting message: for a
// merge that is the existing id with its new count. A repeat of m (applied
// before, by this task or another) counts nothing and pushes the row m
// went into as it is now, if it is still there.
func (s *Service) deliverCollapsed(ctx context.Context, m models.Message, recount bool) error {
	uids, ids := []uint64{m.ToUID}, []uint64{m.ID}
	if err := s.markInFlight(ctx, uids, ids); err != nil {
		return err
	}
	row, applied, err := s.Repo.UpsertCollapsed(ctx, m)
	if err != nil {
		s.clearInFlight(ctx, uids, ids)
		return err
	}
	if row.ID == 0 { // a repeat whose row was purged: nothing to count or show
		s.clearInFlight(ctx, uids, ids)
		return nil
	}
	incr := "0"
	switch {
	case !applied:
	case row.ID == m.ID:
		incr = "1"
		s.Metrics.Stored.Inc()
	default:
		s.Metrics.Collapsed.Inc()
	}
	if recount {
		if err := s.Reset(ctx, m.ToUID); err != nil {
			s.clearInFlight(ctx, uids, ids)
			return fmt.Errorf("reset counters: %w", err)
		}
		incr = "0"
	}
	reply, err := deliverScript.Exec(ctx, s.Redis, deliverKeys(s.firstKeys(1), m.ToUID), deliverArgs(nil, m.Kind, incr, "-1", m.ID)).ToArray()
	if err != nil || len(reply) != 1 { // it may or may not have run: rebuild; the row is stored, so a replay shows it
		s.undoCounts(ctx, uids, ids)
		s.Log.Warn("push failed", "uid", m.ToUID, "err", err, "replies", len(reply))
		return nil
	}
	online, counted, err := s.pushCounts(ctx, m.ToUID, []hub.Frame{frames.Message(&row, false)}, reply[0], true, s.genReader(ctx))
	if online {
		s.Metrics.PushLatency.Observe(time.Since(m.UpdatedAt).Seconds())
	}
	if err != nil {
		s.Log.Warn("push failed", "uid", m.ToUID, "err", err)
	}
	if online && !counted {
		if u, err := s.Unread(ctx, m.ToUID); err == nil {
			_ = s.Cluster.Push(ctx, m.ToUID, frames.UnreadFrame(u))
		}
	}
	return nil
}
