package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// Deliver counts deliveries' messages, pushes them (with the user's new
// counts) to every connection of their users, and stores them in their
// shards. Pushing before the shard commit saves an online user the commit
// in latency. What could look for a pushed message before its row exists
// is covered by the message's in-flight mark, made by the count and
// cleared after the commit: a counter rebuild does not cache while a mark
// is up, and a connect's replay, an ack or read of a pushed id and
// read-all wait for it (see settle), so none misses a message the user was
// shown. A failed or killed worker leaves the task to be retried; a retry
// (recount is true; also set for deliveries that may have been counted
// under another task) rebuilds the counters instead of adding, and pushes
// the same ids again (clients dedupe by id). Collapsing messages store first:
// their frame (id, count) comes from the upsert.
func (a *App) Deliver(ctx context.Context, ds []*Delivery, recount bool) error {
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
		if err := a.deliverCollapsed(ctx, collapsing[i], recount); err != nil {
			return err
		}
	}
	if len(rows) == 0 {
		return nil
	}
	uids := make([]uint64, len(rows))
	ids := make([]uint64, len(rows))
	incr := "1"
	if recount { // an earlier attempt may have counted: rebuild after the commit instead
		incr = "0"
	}
	for i := range rows {
		uids[i], ids[i] = rows[i].ToUID, rows[i].ID
	}
	var execs []rueidis.LuaExec
	for run := range slices.Chunk(rows, scriptRun) {
		e := rueidis.LuaExec{Keys: make([]string, 1, 1+5*len(run)), Args: make([]string, 0, 4*len(run))}
		e.Keys[0] = keyBroadcastGen
		for i := range run {
			e.Keys = deliverKeys(e.Keys, run[i].ToUID)
			e.Args = deliverArgs(e.Args, run[i].Kind, incr, "1", run[i].ID)
		}
		execs = append(execs, e)
	}
	replies := make([]rueidis.RedisMessage, 0, len(rows))
	for _, r := range deliverScript.ExecMulti(ctx, a.Redis, execs...) {
		part, err := r.ToArray()
		if err != nil {
			// Some scripts may have run (a timeout, say): undo for all.
			a.undoCounts(ctx, uids, ids)
			return fmt.Errorf("count deliveries: %w", err)
		}
		replies = append(replies, part...)
	}
	if len(replies) != len(rows) {
		a.undoCounts(ctx, uids, ids)
		return fmt.Errorf("count deliveries: %d replies for %d messages", len(replies), len(rows))
	}
	var stale []int // online users whose new counts are sent after the commit
	for i := range rows {
		online, counted, err := a.pushCounts(ctx, rows[i].ToUID, []hub.Frame{messageFrame(&rows[i], false)}, replies[i], !recount)
		if err != nil {
			a.Log.Warn("push failed", "uid", rows[i].ToUID, "err", err)
		}
		if online {
			a.Metrics.PushLatency.Observe(time.Since(rows[i].UpdatedAt).Seconds())
			if !counted {
				stale = append(stale, i)
			}
		}
	}
	if err := a.shardWriter.Submit(ctx, rows...); err != nil {
		// The messages were shown, so their marks stay up (reads keep
		// waiting for them) until the retry, which marks the same ids,
		// commits and clears them, or until they lapse.
		if ctx.Err() == nil { // else the batch may still commit; the retry rebuilds
			if rerr := a.resetUnread(context.WithoutCancel(ctx), uids...); rerr != nil {
				a.Log.Warn("reset counters after a failed delivery", "err", rerr) // they heal within unreadTTL
			}
		}
		return fmt.Errorf("store delivery: %w", err)
	}
	a.Metrics.Stored.Add(float64(len(rows)))
	if recount {
		if err := a.resetUnread(ctx, uids...); err != nil {
			a.clearInFlight(ctx, uids, ids)
			return fmt.Errorf("reset counters: %w", err)
		}
	}
	a.clearInFlight(ctx, uids, ids)
	var told map[uint64]bool // made only when some user needs counts: not per task
	if len(stale) > 0 {
		told = make(map[uint64]bool, len(stale))
	}
	for _, i := range stale {
		if uid := rows[i].ToUID; !told[uid] {
			told[uid] = true
			if u, err := a.Unread(ctx, uid); err == nil {
				_ = a.pushToUser(ctx, uid, unreadFrameOf(u))
			}
		}
	}
	return nil
}

// undoCounts drops the counter caches of uids (counted for messages that
// were not stored; the next read rebuilds them from MySQL) and clears the
// messages' in-flight marks.
func (a *App) undoCounts(ctx context.Context, uids, ids []uint64) {
	ctx = context.WithoutCancel(ctx)
	if err := a.resetUnread(ctx, uids...); err != nil {
		a.Log.Warn("reset counters after a failed delivery", "err", err) // they heal within unreadTTL
	}
	a.clearInFlight(ctx, uids, ids)
}

// deliverCollapsed stores m through the collapse upsert, then counts it
// (only if it made a new message) and pushes the resulting message: for a
// merge that is the existing id with its new count. A repeat of m (applied
// before, by this task or another) counts nothing and pushes the row m
// went into as it is now, if it is still there.
func (a *App) deliverCollapsed(ctx context.Context, m models.Message, recount bool) error {
	uids, ids := []uint64{m.ToUID}, []uint64{m.ID}
	if err := a.markInFlight(ctx, uids, ids); err != nil {
		return err
	}
	row, applied, err := a.Repo.UpsertCollapsed(ctx, m)
	if err != nil {
		a.clearInFlight(ctx, uids, ids)
		return err
	}
	if row.ID == 0 { // a repeat whose row was purged: nothing to count or show
		a.clearInFlight(ctx, uids, ids)
		return nil
	}
	incr := "0"
	switch {
	case !applied:
	case row.ID == m.ID:
		incr = "1"
		a.Metrics.Stored.Inc()
	default:
		a.Metrics.Collapsed.Inc()
	}
	if recount {
		if err := a.resetUnread(ctx, m.ToUID); err != nil {
			a.clearInFlight(ctx, uids, ids)
			return fmt.Errorf("reset counters: %w", err)
		}
		incr = "0"
	}
	reply, err := deliverScript.Exec(ctx, a.Redis, deliverKeys([]string{keyBroadcastGen}, m.ToUID), deliverArgs(nil, m.Kind, incr, "-1", m.ID)).ToArray()
	if err != nil || len(reply) != 1 { // it may or may not have run: rebuild; the row is stored, so a replay shows it
		a.undoCounts(ctx, uids, ids)
		a.Log.Warn("push failed", "uid", m.ToUID, "err", err, "replies", len(reply))
		return nil
	}
	online, counted, err := a.pushCounts(ctx, m.ToUID, []hub.Frame{messageFrame(&row, false)}, reply[0], true)
	if online {
		a.Metrics.PushLatency.Observe(time.Since(m.UpdatedAt).Seconds())
	}
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

// pushCounts pushes frames (if any) and then, withCounts, the user's new
// counts after the deliver script ran. online reports whether the user
// had any connection, counted whether an unread frame went out.
func (a *App) pushCounts(ctx context.Context, uid uint64, frames []hub.Frame, reply rueidis.RedisMessage, withCounts bool) (online, counted bool, err error) {
	parts, err := reply.ToArray()
	if err != nil || len(parts) != 4 {
		return false, false, fmt.Errorf("deliver script for %d: %v", uid, err)
	}
	inst := parts[1]
	if err := intPairs(inst, func(string, int64) { online = true }); err != nil || !online {
		return false, false, err
	}
	if u, ok := unreadFromReply(parts[0]); withCounts && ok {
		gen, _ := parts[3].AsInt64()
		bgen, nb := int64(-1), 0
		_ = intPairs(parts[2], func(k string, v int64) {
			if nb++; k == fieldBroadcastGen {
				bgen = v
			}
		})
		if nb > 0 && bgen == gen { // the cached broadcast counts are current
			_ = intPairs(parts[2], func(k string, v int64) { addBroadcast(&u, k, v) })
			u.gen = gen
		} else if u, err = a.withBroadcasts(ctx, uid, u); err != nil {
			return true, false, a.route(ctx, uid, inst, frames)
		}
		frames = append(frames, unreadFrameOf(u))
		counted = true
	}
	if len(frames) == 0 {
		return true, false, nil
	}
	return true, counted, a.route(ctx, uid, inst, frames)
}
