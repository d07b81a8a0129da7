package app

import (
	"context"
	"fmt"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// Deliver stores deliveries' messages in their shards, counts them and
// pushes them to every connection of their users. It pushes only after
// the rows are committed, so a connecting client's replay query either
// sees a row or its connection is registered in time for the push, counts
// are never ahead of MySQL, and a read of a pushed id finds its row. A
// failed or killed worker leaves the task to be retried; a retry (retry is
// true) rebuilds the counters instead of adding, and pushes the same ids
// again (clients dedupe by id).
func (a *App) Deliver(ctx context.Context, ds []*Delivery, retry bool) error {
	var rows, collapsing []models.Message
	for _, d := range ds {
		if len(d.IDs) != len(d.UIDs) {
			return fmt.Errorf("delivery has %d ids for %d users", len(d.IDs), len(d.UIDs))
		}
		at := time.UnixMilli(d.At).UTC()
		a.Metrics.QueueLatency.Observe(time.Since(at).Seconds())
		for i, uid := range d.UIDs {
			m := models.Message{
				ID: d.IDs[i], ToUID: uid, Kind: d.Kind, Body: string(d.Body), CollapseKey: d.CollapseKey,
				Count: 1, SortKey: d.IDs[i], CreatedAt: at, UpdatedAt: at,
			}
			if m.CollapseKey != "" {
				collapsing = append(collapsing, m)
			} else {
				rows = append(rows, m)
			}
		}
	}
	for i := range collapsing {
		if err := a.deliverCollapsed(ctx, collapsing[i], retry); err != nil {
			return err
		}
	}
	if len(rows) == 0 {
		return nil
	}
	a.Metrics.Stored.Add(float64(len(rows)))
	uids := make([]uint64, len(rows))
	for i := range rows {
		uids[i] = rows[i].ToUID
	}
	if err := a.markInFlight(ctx, uids); err != nil {
		return err
	}
	if err := a.shardWriter.Submit(ctx, rows...); err != nil {
		a.clearInFlight(ctx, uids)
		return fmt.Errorf("store delivery: %w", err)
	}
	incr := "1"
	if retry {
		if err := a.resetUnread(ctx, uids...); err != nil {
			a.clearInFlight(ctx, uids)
			return fmt.Errorf("reset counters: %w", err)
		}
		incr = "0"
	}
	for _, i := range a.countAndPush(ctx, rows, incr) { // online, but the counter cache had expired
		if u, err := a.Unread(ctx, rows[i].ToUID); err == nil {
			_ = a.pushToUser(ctx, rows[i].ToUID, unreadFrameOf(u))
		}
	}
	return nil
}

// deliverCollapsed stores m through the collapse upsert, then counts it
// (only if it made a new message) and pushes the resulting message: for a
// merge that is the existing id with its new count.
func (a *App) deliverCollapsed(ctx context.Context, m models.Message, retry bool) error {
	if err := a.markInFlight(ctx, []uint64{m.ToUID}); err != nil {
		return err
	}
	row, err := a.Repo.UpsertCollapsed(ctx, m)
	if err != nil {
		a.clearInFlight(ctx, []uint64{m.ToUID})
		return err
	}
	incr := "1"
	if row.ID != m.ID {
		incr = "0"
		a.Metrics.Collapsed.Inc()
	} else {
		a.Metrics.Stored.Inc()
	}
	if retry {
		if err := a.resetUnread(ctx, m.ToUID); err != nil {
			a.clearInFlight(ctx, []uint64{m.ToUID})
			return fmt.Errorf("reset counters: %w", err)
		}
		incr = "0"
	}
	res := deliverScript.Exec(ctx, a.Redis, deliverKeys(m.ToUID), []string{m.Kind, incr})
	online, counted, err := a.pushDelivered(ctx, &row, res)
	if err != nil {
		a.Log.Warn("push failed", "uid", m.ToUID, "err", err)
	}
	if online && !counted {
		if u, err := a.Unread(ctx, m.ToUID); err == nil {
			_ = a.pushToUser(ctx, m.ToUID, unreadFrameOf(u))
		}
	}
	return nil
}

// countAndPush counts each stored row in its user's unread cache (incr
// "1") and pushes it to the user's connections. It returns the indexes of
// rows pushed without an unread frame because the user's counter cache
// was missing. Push failures are logged, not returned: the rows are stored
// and reach the user on their next sync or connect.
func (a *App) countAndPush(ctx context.Context, rows []models.Message, incr string) (stale []int) {
	execs := make([]rueidis.LuaExec, len(rows))
	for i := range rows {
		execs[i] = rueidis.LuaExec{Keys: deliverKeys(rows[i].ToUID), Args: []string{rows[i].Kind, incr}}
	}
	for i, res := range deliverScript.ExecMulti(ctx, a.Redis, execs...) {
		online, counted, err := a.pushDelivered(ctx, &rows[i], res)
		if err != nil {
			a.Log.Warn("push failed", "uid", rows[i].ToUID, "err", err)
		}
		if online && !counted {
			stale = append(stale, i)
		}
	}
	return stale
}

// pushDelivered pushes m after the deliver script ran. online reports
// whether its user had any connection, counted whether the push carried
// an unread frame.
func (a *App) pushDelivered(ctx context.Context, m *models.Message, res rueidis.RedisResult) (online, counted bool, err error) {
	parts, err := res.ToArray()
	if err != nil || len(parts) != 4 {
		return false, false, fmt.Errorf("deliver script for %d: %v", m.ToUID, err)
	}
	inst, err := parts[1].AsIntMap()
	if err != nil || len(inst) == 0 {
		return false, false, err
	}
	frames := []hub.Frame{messageFrame(m, false)}
	if h, err := parts[0].AsIntMap(); err == nil && len(h) > 0 {
		u := unreadFromHash(h)
		b, _ := parts[2].AsIntMap()
		gen, _ := parts[3].AsInt64()
		if len(b) > 0 && b["~gen"] == gen { // the cached broadcast counts are current
			addBroadcasts(&u, b)
			u.gen = gen
		} else if u, err = a.withBroadcasts(ctx, m.ToUID, u); err != nil {
			return true, false, a.route(ctx, m.ToUID, inst, frames)
		}
		frames = append(frames, unreadFrameOf(u))
		counted = true
	}
	a.Metrics.PushLatency.Observe(time.Since(m.UpdatedAt).Seconds())
	return true, counted, a.route(ctx, m.ToUID, inst, frames)
}
