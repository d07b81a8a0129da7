package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

// With a shard map (PUSHDESK_MYSQL_SHARDS) a task's messages may go to
// several MySQL servers. A server that fails must hold up only its own
// users: the rows of the servers that committed stay done, and the
// messages that were not stored go back to the queue as a task of their
// own (Requeuer), which recounts and retries until their server is back.

// Requeuer is what a Queue may also do: queue deliveries again, after a
// pause, as a task that recounts (see Payload.Recount). Package jobs'
// Queue does. Without it a partly failed task is retried whole.
type Requeuer interface {
	EnqueueRecount(ctx context.Context, ds []*Delivery, after time.Duration) error
}

// requeuePause is how long messages of a failed server wait before their
// task first runs again; its own retries then back off as any task's.
const requeuePause = 2 * time.Second

// storeRows writes rows through their servers' shard writers, all at once,
// and returns the rows whose server failed (none when err is nil).
func (s *Service) storeRows(ctx context.Context, rows []models.Message) (failed []models.Message, err error) {
	if len(s.shardWriters) == 1 {
		if err := s.shardWriters[0].Submit(ctx, rows...); err != nil {
			return rows, err
		}
		return nil, nil
	}
	parts := make([][]models.Message, len(s.shardWriters))
	for _, m := range rows {
		i := s.Repo.ServerOf(m.ToUID)
		parts[i] = append(parts[i], m)
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		if len(part) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.shardWriters[i].Submit(ctx, part...)
			}()
		}
	}
	wg.Wait()
	for i, e := range errs {
		if e != nil {
			failed = append(failed, parts[i]...)
			err = errors.Join(err, fmt.Errorf("shard server %s: %w", s.Repo.Shards.Servers[i].Name, e))
		}
	}
	return failed, err
}

// requeue queues msgs (messages of deliveries that could not be stored)
// again as a recounting task, if the queue can.
func (s *Service) requeue(ctx context.Context, msgs []models.Message) error {
	rq, ok := s.Queue.(Requeuer)
	if !ok {
		return errors.New("the queue cannot requeue part of a task")
	}
	var ds []*Delivery
	var d *Delivery
	for _, m := range msgs {
		at := m.CreatedAt.UnixMilli()
		if d == nil || d.Kind != m.Kind || string(d.Body) != m.Body || d.CollapseKey != m.CollapseKey || d.At != at {
			d = &Delivery{Kind: m.Kind, Body: json.RawMessage(m.Body), CollapseKey: m.CollapseKey, At: at}
			ds = append(ds, d)
		}
		d.IDs, d.UIDs = append(d.IDs, m.ID), append(d.UIDs, m.ToUID)
	}
	return rq.EnqueueRecount(context.WithoutCancel(ctx), ds, requeuePause)
}

// keepStored is rows without those of the users in lost.
func keepStored(rows []models.Message, lost map[uint64]bool) []models.Message {
	out := make([]models.Message, 0, len(rows))
	for _, m := range rows {
		if !lost[m.ToUID] {
			out = append(out, m)
		}
	}
	return out
}

// finishSplit ends a task some of whose messages (unstored, failing with
// err) were not stored while done others were: it requeues the unstored
// ones and reports the task done. When nothing was stored, or the requeue
// fails, the task fails and is retried whole, as without a shard map
// (stored rows are skipped by the retry's INSERT IGNORE).
func (s *Service) finishSplit(ctx context.Context, unstored []models.Message, done int, err error) error {
	if len(unstored) == 0 {
		return nil
	}
	if done == 0 {
		return fmt.Errorf("store delivery: %w", err)
	}
	if rerr := s.requeue(ctx, unstored); rerr != nil {
		return fmt.Errorf("store delivery: %w (and requeue its unstored part: %v)", err, rerr)
	}
	s.Metrics.Requeued.Add(float64(len(unstored)))
	s.Log.Warn("a shard server failed: its part of a delivery is requeued, the rest is stored", "requeued", len(unstored), "stored", done, "err", err)
	return nil
}
