package cluster

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/batch"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// Deps is what the cluster needs; every field is required.
type Deps struct {
	Redis    rueidis.Client
	Hub      *hub.Hub
	Repo     *models.Repo // the connection log
	IDs      *ids.Leased  // its lease is renewed with the alive key
	Log      *slog.Logger
	Metrics  *metrics.Metrics
	Instance string
	// Identity is the cluster's id (CheckIdentity), put back into a Redis
	// that lost its data.
	Identity string
	// Counts returns uid's unread frame read afresh, for a push tried
	// again after nobody heard it.
	Counts func(ctx context.Context, uid uint64) (hub.Frame, error)
	// Control acts on a control frame (a type starting with "~") sent to
	// uid's connections here; it runs on its own goroutine.
	Control func(uid uint64, f hub.Frame)
	// Broadcast fans out a broadcast envelope (see PublishBroadcast) to
	// this instance's connections; it runs on its own goroutine.
	Broadcast func(envelope []byte)
	// Wake wakes this process's queue worker loops when another process
	// says it enqueued fast work (see PublishWake); nil without workers.
	Wake func()
	// Resync brings every client of this instance up to date after Redis
	// lost its data (see recover); it runs on its own goroutine.
	Resync func()
}

// Service is this instance's part of the cluster. Safe for concurrent use.
type Service struct {
	Deps
	connLog *batch.Batcher[models.ConnEvent]

	republishing    atomic.Int64 // pushes being tried again (see republish)
	republishWarned atomic.Int64 // unix second of the last "dropped" warning
	mismatches      int          // registry refreshes in a row that found drift (keepAlive only)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New registers the instance; Start starts its pub/sub listener and its
// keep-alive (refresh, reconcile, sweep of dead instances), once what the
// Deps' functions call exists.
func New(ctx context.Context, d Deps) (*Service, error) {
	s := &Service{Deps: d}
	s.connLog = batch.New(batch.Config{MaxBatch: 1000, Flushers: 1}, batch.Retrying(d.Repo.InsertConnEvents, func(rows int, err error) {
		s.Log.Error("async write failed", "what", "connection log", "rows", rows, "err", err)
		s.Metrics.Errors.WithLabelValues("connection log").Inc()
	}))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.announce(ctx); err != nil {
		s.connLog.Close()
		return nil, err
	}
	return s, nil
}

// Start starts the listener and the keep-alive (call it once).
func (s *Service) Start() {
	s.wg.Add(2)
	go s.listen()
	go s.keepAlive()
}

// Close stops the loops and removes this instance from the registry
// (after its clients are gone), then flushes the connection log.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait() // keepAlive must not re-register what retire removes
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.retire(ctx)
	cancel()
	s.connLog.Close()
}

// LogConn records a connection event (connect, disconnect, lost) in
// MySQL, in batches; when the batcher is full the event is dropped and
// counted.
func (s *Service) LogConn(ev models.ConnEvent) {
	if !s.connLog.Add(ev) {
		s.Metrics.Errors.WithLabelValues("connection log dropped").Inc()
	}
}
