package delivery

// A message's path through this package: Ingest (the request) queues it,
// ProcessTask (an asynq worker) hands it to Deliver, which counts, pushes
// (package cluster) and stores it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/broadcast"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/internal/luascript"
	"github.com/pushdesk/pushdesk/internal/rkey"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// Ingest assigns ids, routes each recipient by activity and hands the
// deliveries to the queues. With an idempotency key, a repeat of an
// earlier call (also a concurrent one) answers that call's ids with
// Duplicate set, and enqueues nothing.
func (s *Service) Ingest(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	if req.IdempotencyKey != "" {
		return s.ingestOnce(ctx, req)
	}
	return s.ingestNow(ctx, req)
}

func (s *Service) ingestNow(ctx context.Context, req *IngestRequest) (*IngestResult, error) {
	p, err := s.planIngest(ctx, req)
	if err != nil {
		return nil, err
	}
	// The delayed part first: if the fast enqueue then fails, the caller's
	// retry repeats at most the low-priority part (with an idempotency key,
	// not even that: see ingestClaimed).
	if err := s.enqueueSlow(ctx, p); err != nil {
		return nil, err
	}
	if err := s.enqueueFast(ctx, p); err != nil {
		return nil, err
	}
	return p.Result, nil
}

// ingestPlan is an ingest call's answer and its deliveries by queue (nil
// when a queue gets none).
type ingestPlan struct {
	Result *IngestResult `json:"result"`
	Fast   *Delivery     `json:"fast,omitempty"`
	Slow   *Delivery     `json:"slow,omitempty"`
}

// planIngest assigns ids and routes each recipient by activity.
func (s *Service) planIngest(ctx context.Context, req *IngestRequest) (*ingestPlan, error) {
	routes, err := s.Activity.Routes(ctx, req.UIDs)
	if err != nil {
		s.Log.Error("route by activity", "err", err)
		return nil, apierr.ErrUnavailable
	}
	at := time.Now().UnixMilli()
	fast := &Delivery{Kind: req.Kind, Body: req.Body, CollapseKey: req.CollapseKey, At: at}
	slow := &Delivery{Kind: req.Kind, Body: req.Body, CollapseKey: req.CollapseKey, At: at}
	res := &IngestResult{IDs: make([]string, len(req.UIDs))}
	for i, uid := range req.UIDs {
		id := s.IDs.Next()
		res.IDs[i] = ids.Format(id)
		switch routes[i] {
		case activity.RouteFast:
			fast.IDs, fast.UIDs = append(fast.IDs, id), append(fast.UIDs, uid)
		case activity.RouteDelayed:
			slow.IDs, slow.UIDs = append(slow.IDs, id), append(slow.UIDs, uid)
		default:
			res.Released++
		}
	}
	res.Accepted = len(fast.UIDs) + len(slow.UIDs)
	s.Metrics.Released.Add(float64(res.Released))
	p := &ingestPlan{Result: res}
	if len(fast.UIDs) > 0 {
		p.Fast = fast
	}
	if len(slow.UIDs) > 0 {
		p.Slow = slow
	}
	return p, nil
}

func (s *Service) enqueueSlow(ctx context.Context, p *ingestPlan) error {
	if p.Slow == nil {
		return nil
	}
	if err := s.Queue.EnqueueDelayed(ctx, p.Slow); err != nil {
		s.Log.Error("enqueue delayed delivery", "err", err)
		return apierr.ErrUnavailable
	}
	s.Metrics.Ingested.WithLabelValues("delayed").Add(float64(len(p.Slow.UIDs)))
	return nil
}

func (s *Service) enqueueFast(ctx context.Context, p *ingestPlan) error {
	if p.Fast == nil {
		return nil
	}
	if err := s.ingest.Submit(ctx, p.Fast); err != nil {
		s.Log.Error("enqueue delivery", "err", err)
		return apierr.ErrUnavailable
	}
	s.Metrics.Ingested.WithLabelValues("fast").Add(float64(len(p.Fast.UIDs)))
	return nil
}

// TypeDeliver is the asynq task type that delivers: package jobs queues
// it, and its workers hand it to ProcessTask.
const TypeDeliver = "push:deliver"

// Payload is a TypeDeliver task: the deliveries of one or more ingest
// calls that arrived together.
type Payload struct {
	Deliveries []*Delivery `json:"d"`
	// Recount asks the worker to rebuild the users' counters after the
	// commit rather than add to them, as on a retry. Aggregated tasks set
	// it: when asynq recovers an aggregation set whose task was already
	// made (a crash between the two), the same deliveries come back as a
	// new task, with no retry count to tell.
	Recount bool `json:"r,omitempty"`
}

// ProcessTask runs a TypeDeliver task (it is an asynq.Handler). A retry
// recounts (see Deliver).
func (s *Service) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode payload: %v: %w", err, asynq.SkipRetry)
	}
	retry, _ := asynq.GetRetryCount(ctx)
	return s.Deliver(ctx, p.Deliveries, retry > 0 || p.Recount)
}

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
	// With shards on several servers, one that fails holds up only its
	// users: what it could not store is requeued (see servers.go).
	split := len(s.shardWriters) > 1
	var unstored []models.Message
	var storeErr error
	done := 0
	for i := range collapsing {
		if err := s.deliverCollapsed(ctx, collapsing[i], recount); err != nil {
			if !split {
				return err
			}
			unstored, storeErr = append(unstored, collapsing[i]), errors.Join(storeErr, err)
			continue
		}
		done++
	}
	if len(rows) == 0 {
		return s.finishSplit(ctx, unstored, done, storeErr)
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
	// A run is one script call: up to scriptRun messages, of one slot on
	// a cluster; a user's messages stay in order either way.
	runs := rkey.Runs(len(rows), scriptRun, s.cluster(), func(i int) string { return keyUnread(rows[i].ToUID) })
	execs := make([]rueidis.LuaExec, len(runs))
	for r, run := range runs {
		e := rueidis.LuaExec{Keys: s.firstKeys(len(run)), Args: make([]string, 0, 4*len(run))}
		for _, i := range run {
			e.Keys = deliverKeys(e.Keys, rows[i].ToUID)
			e.Args = deliverArgs(e.Args, rows[i].Kind, incr, "1", rows[i].ID)
		}
		execs[r] = e
	}
	replies := make([]rueidis.RedisMessage, len(rows))
	for r, res := range deliverScript.ExecMulti(ctx, s.Redis, execs...) {
		part, err := res.ToArray()
		if err == nil && len(part) != len(runs[r]) {
			err = fmt.Errorf("%d replies for %d messages", len(part), len(runs[r]))
		}
		if err != nil {
			// Some scripts may have run (a timeout, say): undo for all.
			s.undoCounts(ctx, uids, ids)
			return fmt.Errorf("count deliveries: %w", err)
		}
		for j, i := range runs[r] {
			replies[i] = part[j]
		}
	}
	gen := s.genReader(ctx)
	var stale []uint64 // online users whose new counts are sent after the commit
	for i := range rows {
		push := []hub.Frame{frames.Message(&rows[i], false)}
		if recount && pushedBefore(replies[i]) {
			// At most one repeat: an earlier attempt pushed this message
			// and the first retry pushed it again; this one stores it and
			// sends the counts, not the message a third time.
			push = nil
		}
		online, counted, err := s.pushCounts(ctx, rows[i].ToUID, push, replies[i], !recount, gen)
		if err != nil {
			s.Log.Warn("push failed", "uid", rows[i].ToUID, "err", err)
		}
		if online {
			s.Metrics.PushLatency.Observe(time.Since(rows[i].UpdatedAt).Seconds())
			if !counted {
				stale = append(stale, rows[i].ToUID)
			}
		}
	}
	failed, err := s.storeRows(ctx, rows)
	if err != nil {
		// The messages were shown, so their marks stay up (reads keep
		// waiting for them) until the retry, which marks the same ids,
		// commits and clears them, or until they lapse.
		whole := !split || (len(failed) == len(rows) && done == 0)
		resetOf := uids
		if !whole {
			resetOf = nil
			for i := range failed {
				resetOf = append(resetOf, failed[i].ToUID)
			}
		}
		if ctx.Err() == nil { // else the batch may still commit; the retry rebuilds
			if rerr := s.Reset(context.WithoutCancel(ctx), resetOf...); rerr != nil {
				s.Log.Warn("reset counters after a failed delivery", "err", rerr) // they heal within unreadTTL
			}
		}
		if whole {
			return fmt.Errorf("store delivery: %w", err)
		}
		unstored, storeErr = append(unstored, failed...), errors.Join(storeErr, err)
		lost := make(map[uint64]bool, len(failed))
		for i := range failed {
			lost[failed[i].ToUID] = true // a user's rows are all on one server
		}
		rows, uids, ids, stale = keepStored(rows, lost), uids[:0], ids[:0], slices.DeleteFunc(stale, func(u uint64) bool { return lost[u] })
		for i := range rows {
			uids, ids = append(uids, rows[i].ToUID), append(ids, rows[i].ID)
		}
		if len(rows) == 0 {
			return s.finishSplit(ctx, unstored, done, storeErr)
		}
	}
	s.Metrics.Stored.Add(float64(len(rows)))
	if recount {
		if err := s.Reset(ctx, uids...); err != nil {
			s.clearInFlight(ctx, uids, ids)
			return fmt.Errorf("reset counters: %w", err)
		}
	}
	if late := s.clearInFlight(ctx, uids, ids); late != nil {
		s.markLate(ctx, late)
	}
	var told map[uint64]bool // made only when some user needs counts: not per task
	if len(stale) > 0 {
		told = make(map[uint64]bool, len(stale))
	}
	for _, uid := range stale {
		if !told[uid] {
			told[uid] = true
			if u, err := s.Unread(ctx, uid); err == nil {
				_ = s.Cluster.Push(ctx, uid, frames.UnreadFrame(u))
			}
		}
	}
	return s.finishSplit(ctx, unstored, done+len(rows), storeErr)
}

// pushCounts pushes out (if any) and then, withCounts, the user's new
// counts after the deliver script ran. online reports whether the user
// had any connection, counted whether an unread frame went out. gen reads
// the broadcast generation when the reply leaves it out (genReader).
func (s *Service) pushCounts(ctx context.Context, uid uint64, out []hub.Frame, reply rueidis.RedisMessage, withCounts bool, readGen func() int64) (online, counted bool, err error) {
	parts, err := reply.ToArray()
	if err != nil || len(parts) != 5 {
		return false, false, fmt.Errorf("deliver script for %d: %v", uid, err)
	}
	inst := parts[1]
	if err := luascript.IntPairs(inst, func(string, int64) { online = true }); err != nil || !online {
		return false, false, err
	}
	if u, ok := unreadFromReply(parts[0]); withCounts && ok {
		gen, _ := parts[3].AsInt64()
		if gen == -1 {
			gen = readGen()
		}
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
// the queue until it, so nothing is lost meanwhile. How 100 ms was chosen:
// docs/performance.md, "Shard writes".
const shardLinger = 100 * time.Millisecond

// pushedBefore reports whether the deliver script says the message was
// pushed twice already: by an attempt that did not get to clear its mark
// (its commit failed, or it died) and by the retry after it. Marks lapse
// after inFlightTTL, so a retry later than that pushes again (clients
// dedupe by id).
func pushedBefore(reply rueidis.RedisMessage) bool {
	parts, err := reply.ToArray()
	if err != nil || len(parts) != 5 {
		return false
	}
	n, _ := parts[4].AsInt64()
	return n == 1
}
