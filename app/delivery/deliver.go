package delivery

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pushdesk/pushdesk/app/broadcast"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/internal/luascript"
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
func (s *Service) Deliver(ctx context.Context, ds []*Delivery, recount bool) error {
	var rows, collapsing []models.Message
	for _, d := range ds {
		if len(d.IDs) != len(d.UIDs) {
			return fmt.Errorf("delivery has %d ids for %d users", len(d.IDs), len(d.UIDs))
		}
		at := time.UnixMilli(d.At).UTC()
		s.Metrics.QueueLatency.Observe(time.Since(at).Seconds())
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
		if err := s.deliverCollapsed(ctx, collapsing[i], recount); err != nil {
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
		e.Keys[0] = broadcast.KeyGen
		for i := range run {
			e.Keys = deliverKeys(e.Keys, run[i].ToUID)
			e.Args = deliverArgs(e.Args, run[i].Kind, incr, "1", run[i].ID)
		}
		execs = append(execs, e)
	}
	replies := make([]rueidis.RedisMessage, 0, len(rows))
	for _, r := range deliverScript.ExecMulti(ctx, s.Redis, execs...) {
		part, err := r.ToArray()
		if err != nil {
			// Some scripts may have run (a timeout, say): undo for all.
			s.undoCounts(ctx, uids, ids)
			return fmt.Errorf("count deliveries: %w", err)
		}
		replies = append(replies, part...)
	}
	if len(replies) != len(rows) {
		s.undoCounts(ctx, uids, ids)
		return fmt.Errorf("count deliveries: %d replies for %d messages", len(replies), len(rows))
	}
	var stale []int // online users whose new counts are sent after the commit
	for i := range rows {
		online, counted, err := s.pushCounts(ctx, rows[i].ToUID, []hub.Frame{frames.Message(&rows[i], false)}, replies[i], !recount)
		if err != nil {
			s.Log.Warn("push failed", "uid", rows[i].ToUID, "err", err)
		}
		if online {
			s.Metrics.PushLatency.Observe(time.Since(rows[i].UpdatedAt).Seconds())
			if !counted {
				stale = append(stale, i)
			}
		}
	}
	if err := s.shardWriter.Submit(ctx, rows...); err != nil {
		// The messages were shown, so their marks stay up (reads keep
		// waiting for them) until the retry, which marks the same ids,
		// commits and clears them, or until they lapse.
		if ctx.Err() == nil { // else the batch may still commit; the retry rebuilds
			if rerr := s.Reset(context.WithoutCancel(ctx), uids...); rerr != nil {
				s.Log.Warn("reset counters after a failed delivery", "err", rerr) // they heal within unreadTTL
			}
		}
		return fmt.Errorf("store delivery: %w", err)
	}
	s.Metrics.Stored.Add(float64(len(rows)))
	if recount {
		if err := s.Reset(ctx, uids...); err != nil {
			s.clearInFlight(ctx, uids, ids)
			return fmt.Errorf("reset counters: %w", err)
		}
	}
	s.clearInFlight(ctx, uids, ids)
	var told map[uint64]bool // made only when some user needs counts: not per task
	if len(stale) > 0 {
		told = make(map[uint64]bool, len(stale))
	}
	for _, i := range stale {
		if uid := rows[i].ToUID; !told[uid] {
			told[uid] = true
			if u, err := s.Unread(ctx, uid); err == nil {
				_ = s.Cluster.Push(ctx, uid, frames.UnreadFrame(u))
			}
		}
	}
	return nil
}

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
	reply, err := deliverScript.Exec(ctx, s.Redis, deliverKeys([]string{broadcast.KeyGen}, m.ToUID), deliverArgs(nil, m.Kind, incr, "-1", m.ID)).ToArray()
	if err != nil || len(reply) != 1 { // it may or may not have run: rebuild; the row is stored, so a replay shows it
		s.undoCounts(ctx, uids, ids)
		s.Log.Warn("push failed", "uid", m.ToUID, "err", err, "replies", len(reply))
		return nil
	}
	online, counted, err := s.pushCounts(ctx, m.ToUID, []hub.Frame{frames.Message(&row, false)}, reply[0], true)
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

// pushCounts pushes out (if any) and then, withCounts, the user's new
// counts after the deliver script ran. online reports whether the user
// had any connection, counted whether an unread frame went out.
func (s *Service) pushCounts(ctx context.Context, uid uint64, out []hub.Frame, reply rueidis.RedisMessage, withCounts bool) (online, counted bool, err error) {
	parts, err := reply.ToArray()
	if err != nil || len(parts) != 4 {
		return false, false, fmt.Errorf("deliver script for %d: %v", uid, err)
	}
	inst := parts[1]
	if err := luascript.IntPairs(inst, func(string, int64) { online = true }); err != nil || !online {
		return false, false, err
	}
	if u, ok := unreadFromReply(parts[0]); withCounts && ok {
		gen, _ := parts[3].AsInt64()
		bgen, nb := int64(-1), 0
		_ = luascript.IntPairs(parts[2], func(k string, v int64) {
			if nb++; k == broadcast.FieldGen {
				bgen = v
			}
		})
		if nb > 0 && bgen == gen { // the cached broadcast counts are current
			_ = luascript.IntPairs(parts[2], func(k string, v int64) { broadcast.AddCount(&u, k, v) })
			u.Gen = gen
		} else if u, err = s.Broadcasts.AddTo(ctx, uid, u); err != nil {
			return true, false, s.Cluster.Route(ctx, uid, inst, out)
		}
		out = append(out, frames.UnreadFrame(u))
		counted = true
	}
	if len(out) == 0 {
		return true, false, nil
	}
	return true, counted, s.Cluster.Route(ctx, uid, inst, out)
}

// shardLinger is how long, under load, a batch of messages waits for
// more before it is written. MariaDB's cost is mostly per statement, and a
// batch holds one INSERT per shard table it touches: a batch of a few
// dozen rows over 128 tables is a statement per row or two. Waiting is
// cheap for the user, who was pushed the message before its commit; what
// reads a pushed id waits for the commit (settle), and the task stays on
// the queue until it, so nothing is lost meanwhile.
//
// Measured (BENCH.md method, 2,000 clients, 20,000 messages, alternating
// runs), MariaDB's CPU per message and the delivery rate: 10 ms, 36–45 µs
// and 6,500–7,300/s; 60 ms, 24–26 µs; 100 ms, 18–21 µs and 7,600–8,600/s;
// 200 ms, 16 µs but a worse p99 (29 and 44 ms against 19–26 ms). Eight
// writers with an eighth of the tables each (at 100 ms) were worse than
// one: 24–34 µs, since each commit costs too. Before that, one flusher had
// beaten two, and 10 ms had beaten 5 ms.
const shardLinger = 100 * time.Millisecond
