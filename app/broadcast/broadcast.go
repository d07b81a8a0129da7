package broadcast

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pushdesk/pushdesk/app/activity"
	"github.com/pushdesk/pushdesk/app/cluster"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/app/ids"
	"github.com/pushdesk/pushdesk/app/metrics"
	"github.com/pushdesk/pushdesk/internal/clock"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
	"golang.org/x/sync/singleflight"
)

// Deps is what the service needs; every field is required.
type Deps struct {
	Redis    rueidis.Client
	Repo     *models.Repo
	Hub      *hub.Hub
	Cluster  *cluster.Service
	Activity *activity.Service
	Queue    Queue
	IDs      *ids.Gen
	Clock    *clock.Clock
	Log      *slog.Logger
	Metrics  *metrics.Metrics
	Instance string
	// ReleaseAfter is how long a user's broadcast state outlives their
	// last visit; Retention how long broadcasts are kept.
	ReleaseAfter, Retention time.Duration
}

// Service is the broadcast desk. Safe for concurrent use.
type Service struct {
	Deps
	newest atomic.Pointer[newest] // see newestSent
	flight singleflight.Group
}

// New returns the service.
func New(d Deps) *Service { return &Service{Deps: d} }

// Receive fans out a broadcast envelope another instance published here
// (cluster.Deps.Broadcast).
func (s *Service) Receive(envelope []byte) {
	live, frame, err := decodeEnvelope(envelope)
	if err != nil {
		s.Log.Warn("drop malformed broadcast envelope", "err", err)
		return
	}
	s.fanOutLocal(live, frame)
}

// ControlSegments is the control frame "this user's segments changed",
// pushed to the user's instances (see cluster.Deps.Control); never sent
// to a client.
const ControlSegments = "~seg"
