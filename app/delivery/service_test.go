package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/broadcast"
	"github.com/pushdesk/pushdesk/app/cluster"
	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/apptest"
	"github.com/pushdesk/pushdesk/internal/clock"
)

// testApp is a delivery service wired as app.New wires it (cluster,
// activity, broadcasts), on a Redis and a MySQL of the test's own, with q
// as its queue (nil: one that takes nothing, for tests that enqueue none).
func testApp(t *testing.T, q Queue) *Service {
	t.Helper()
	rc, _ := apptest.Redis(t)
	repo := apptest.Repo(t)
	log := apptest.Log()
	gen, err := ids.Lease(context.Background(), rc, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New()
	m := metrics.New(h.Stats)
	clk := new(clock.Clock)
	var s *Service
	identity, err := cluster.CheckIdentity(context.Background(), rc, repo)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cluster.New(context.Background(), cluster.Deps{Identity: identity,
		Redis: rc, Hub: h, Repo: repo, IDs: gen, Log: log, Metrics: m, Instance: "test",
		Counts: func(ctx context.Context, uid uint64) (hub.Frame, error) {
			u, err := s.Unread(ctx, uid)
			return frames.UnreadFrame(u), err
		},
		Control: func(uint64, hub.Frame) {}, Broadcast: func([]byte) {}, Resync: func() {},
	})
	if err != nil {
		t.Fatal(err)
	}
	cl.Start()
	t.Cleanup(cl.Close)
	act := activity.New(activity.Deps{Redis: rc, Repo: repo, Clock: clk, Log: log, Metrics: m,
		Policy: activity.Policy{ActiveWithin: 24 * time.Hour, ReleaseAfter: 15 * 24 * time.Hour}})
	t.Cleanup(act.Close)
	bc := broadcast.New(broadcast.Deps{Redis: rc, Repo: repo, Hub: h, Cluster: cl, Activity: act, IDs: gen.Gen, Clock: clk,
		Log: log, Metrics: m, Instance: "test", ReleaseAfter: 15 * 24 * time.Hour, Retention: 15 * 24 * time.Hour})
	if q == nil {
		q = noQueue{t}
	}
	s = New(Deps{Redis: rc, Repo: repo, Cluster: cl, Activity: act, Broadcasts: bc, Queue: q, IDs: gen.Gen, Clock: clk,
		Log: log, Metrics: m, Retention: 15 * 24 * time.Hour, IngestLinger: time.Millisecond})
	t.Cleanup(s.Close)
	return s
}

// noQueue fails a test that enqueues.
type noQueue struct{ t *testing.T }

func (q noQueue) EnqueueDeliver(context.Context, []*Delivery) error {
	q.t.Error("unexpected enqueue")
	return nil
}

func (q noQueue) EnqueueDelayed(context.Context, *Delivery) error {
	q.t.Error("unexpected enqueue")
	return nil
}
