package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the process's Prometheus series, on their own registry so
// that several processes' worth (tests) can live in one.
type Metrics struct {
	Registry *prometheus.Registry

	Ingested     *prometheus.CounterVec // by queue: fast, delayed
	Released     prometheus.Counter
	Duplicates   prometheus.Counter
	Stored       prometheus.Counter
	Collapsed    prometheus.Counter
	Requeued     prometheus.Counter
	Pushed       prometheus.Counter // frames queued on local connections
	Errors       *prometheus.CounterVec
	QueueLatency prometheus.Histogram // ingest → worker picks it up
	PushLatency  prometheus.Histogram // ingest → pushed to the user's instances
	Connects     prometheus.Counter
}

// New makes the series; stats reports this instance's open connections
// and the distinct users among them.
func New(stats func() (conns, users int)) *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lat := []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 60}
	m := &Metrics{
		Registry:     r,
		Ingested:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pushdesk_messages_ingested_total", Help: "Messages accepted by ingest, by queue."}, []string{"queue"}),
		Released:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pushdesk_messages_released_total", Help: "Messages not stored because their user was inactive too long."}),
		Duplicates:   prometheus.NewCounter(prometheus.CounterOpts{Name: "pushdesk_ingest_duplicates_total", Help: "Ingest calls answered from an earlier call with the same idempotency key."}),
		Stored:       prometheus.NewCounter(prometheus.CounterOpts{Name: "pushdesk_messages_stored_total", Help: "Messages written to the shards."}),
		Collapsed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "pushdesk_messages_collapsed_total", Help: "Messages merged into an unread one with the same collapse key."}),
		Requeued:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pushdesk_messages_requeued_total", Help: "Messages whose shard server failed while the rest of their task was stored: queued again as a task of their own."}),
		Pushed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "pushdesk_frames_pushed_total", Help: "Frames queued on this instance's connections."}),
		Errors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pushdesk_errors_total", Help: "Errors, by where they happened."}, []string{"where"}),
		QueueLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pushdesk_queue_latency_seconds", Help: "From ingest to a worker taking the task.", Buckets: lat}),
		PushLatency:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pushdesk_delivery_latency_seconds", Help: "From ingest to the push leaving for the user's instances.", Buckets: lat}),
		Connects:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pushdesk_connects_total", Help: "Client connections accepted."}),
	}
	// Known label values start at zero, so their series exist (and rate()
	// works) before the first event.
	for _, q := range []string{"fast", "delayed"} {
		m.Ingested.WithLabelValues(q)
	}
	for _, where := range []string{"connection log", "last seen", "connection log dropped", "last seen dropped", "push retry dropped"} {
		m.Errors.WithLabelValues(where)
	}
	r.MustRegister(m.Ingested, m.Released, m.Duplicates, m.Stored, m.Collapsed, m.Requeued, m.Pushed, m.Errors, m.QueueLatency, m.PushLatency, m.Connects,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushdesk_connections", Help: "Open client connections on this instance."},
			func() float64 { n, _ := stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pushdesk_online_users", Help: "Distinct users connected to this instance."},
			func() float64 { _, n := stats(); return float64(n) }),
	)
	return m
}
