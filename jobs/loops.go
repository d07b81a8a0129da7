package jobs

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// demandLoop is a fast-queue loop that runs only while there is work for
// it. Each asynq server costs its Redis about 2 commands a second even
// when idle (heartbeats, its pub/sub health check, the dequeues after
// each wait), so the loops beyond the first two start when a wake finds
// every running loop busy and stop after idleStops empty waits in a row.
// An asynq server cannot start again after Shutdown: each start makes a
// new one on the loop's client.
type demandLoop struct {
	client redis.UniversalClient
	cfg    asynq.Config
	idle   atomic.Int32 // waits in a row that ended with nothing to do

	mu   sync.Mutex
	srv  *asynq.Server // nil while stopped
	stop chan struct{} // closed when this run of the loop stops
}

// idleStops is how many empty waits in a row (of FastIdleWait each) stop
// an on-demand loop: 30 s without work.
const idleStops = 3

// worked and idled count the loop's waits; nil-safe (the loops that
// always run have no demandLoop).
func (l *demandLoop) worked() {
	if l != nil {
		l.idle.Store(0)
	}
}

func (l *demandLoop) idled() {
	if l != nil {
		l.idle.Add(1)
	}
}

// stopped is closed when the loop's current run stops (nil, never ready,
// for a loop that always runs or one not running).
func (l *demandLoop) stopped() <-chan struct{} {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stop
}

func (l *demandLoop) running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.srv != nil
}

// start runs the loop with mux unless it runs already.
func (l *demandLoop) start(mux *asynq.ServeMux) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		return nil
	}
	l.idle.Store(0)
	l.stop = make(chan struct{})
	srv := asynq.NewServerFromRedisClient(l.client, l.cfg)
	if err := srv.Start(mux); err != nil {
		close(l.stop)
		return err
	}
	l.srv = srv
	return nil
}

// shutdown ends the loop's wait and stops it (its running tasks get
// cfg.ShutdownTimeout, as at any worker shutdown).
func (l *demandLoop) shutdown() {
	l.mu.Lock()
	srv := l.srv
	if srv != nil {
		close(l.stop)
		l.srv = nil
	}
	l.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

// manage starts an on-demand loop when a wake finds every loop busy (one
// per wake, so a burst brings them up within a few tasks) and stops the
// ones that idled idleStops times, until done closes.
func (w *Workers) manage(mux *asynq.ServeMux, log *slog.Logger) {
	defer close(w.managed)
	tick := time.NewTicker(w.waker.idle / 2)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-w.waker.busy:
			for _, l := range w.extra {
				if !l.running() {
					if err := l.start(mux); err != nil {
						log.Warn("start a worker loop", "err", err)
					}
					break
				}
			}
		case <-tick.C:
			for _, l := range w.extra {
				if l.running() && l.idle.Load() >= idleStops {
					l.shutdown()
				}
			}
		}
	}
}

// Running is how many worker loops run now.
func (w *Workers) Running() int {
	n := len(w.servers)
	for _, l := range w.extra {
		if l.running() {
			n++
		}
	}
	return n
}
