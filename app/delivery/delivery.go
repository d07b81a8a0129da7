package delivery

import (
	"context"
	"log/slog"
	"time"

	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/broadcast"
	"github.com/pushdesk/pushdesk/app/cluster"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/batch"
	"github.com/pushdesk/pushdesk/internal/clock"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// Queue takes deliveries to the job queue; package jobs implements it.
type Queue interface {
	// EnqueueDeliver queues deliveries on the fast queue as one task.
	EnqueueDeliver(ctx context.Context, ds []*Delivery) error
	// EnqueueDelayed queues a delivery for inactive users on the delayed
	// queue, where tasks are aggregated into batches.
	EnqueueDelayed(ctx context.Context, d *Delivery) error
}

// Deps is what the service needs; every field is required.
type Deps struct {
	Redis      rueidis.Client
	Repo       *models.Repo
	Cluster    *cluster.Service
	Activity   *activity.Service
	Broadcasts *broadcast.Service
	Queue      Queue
	IDs        *ids.Gen
	Clock      *clock.Clock
	Log        *slog.Logger
	Metrics    *metrics.Metrics
	// Retention is how long messages are kept.
	Retention time.Duration
	// IngestLinger is how long, under load, an ingest call may wait to
	// share its task with others (PUSHDESK_INGEST_LINGER).
	IngestLinger time.Duration
}

// Service delivers personal messages. Safe for concurrent use.
type Service struct {
	Deps
	ingest *batch.Batcher[*Delivery]
	// shardWriters has one batcher per database holding shards (one
	// without a shard map), so a server that fails fails only the
	// batches of its own users.
	shardWriters []*batch.Batcher[models.Message]
}

// New starts the ingest and shard batchers (see Close).
func New(d Deps) *Service {
	s := &Service{Deps: d}
	// Concurrent ingest calls share one task: asynq handles tasks one
	// dequeue at a time, so fewer, fuller tasks carry more messages.
	s.ingest = batch.New(batch.Config{MaxBatch: 256, Flushers: 1, Linger: d.IngestLinger, LingerFrom: 4}, func(ctx context.Context, ds []*Delivery) error {
		return s.Queue.EnqueueDeliver(ctx, ds)
	})
	// Messages are pushed before their commit, so under load (the batch
	// before held 16 rows or more) a shard batch may wait up to
	// shardLinger to grow, and one flusher writes them.
	for range d.Repo.ServerCount() {
		s.shardWriters = append(s.shardWriters, batch.New(batch.Config{MaxBatch: 2000, Flushers: 1, Linger: shardLinger, LingerFrom: 16}, d.Repo.InsertMessages))
	}
	return s
}

// Close flushes the batchers: the ingest one into the queue, so close the
// queue after this.
func (s *Service) Close() {
	s.ingest.Close()
	for _, w := range s.shardWriters {
		w.Close()
	}
}
