package jobs

import (
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// QueueStatsEvery is how long QueueCollector reuses what it read: asynq's
// Inspector reads a queue's state with a script and samples its memory,
// a few dozen Redis commands per queue, and every process that exports
// them is scraped.
const QueueStatsEvery = 30 * time.Second

// QueueCollector exports the state of the asynq queues (desk-wide, as
// asynq's Inspector reads it) as Prometheus gauges and counters:
// pushdesk_queue_tasks{queue,state}, pushdesk_queue_oldest_pending_seconds
// and pushdesk_queue_{processed,failed}_total. Safe for concurrent use.
type QueueCollector struct {
	insp *asynq.Inspector

	mu   sync.Mutex
	at   time.Time
	last []*asynq.QueueInfo
}

var (
	descTasks     = prometheus.NewDesc("pushdesk_queue_tasks", "Tasks in an asynq queue, by state (desk-wide).", []string{"queue", "state"}, nil)
	descOldest    = prometheus.NewDesc("pushdesk_queue_oldest_pending_seconds", "How long the oldest pending task of a queue has waited (desk-wide).", []string{"queue"}, nil)
	descProcessed = prometheus.NewDesc("pushdesk_queue_processed_total", "Tasks a queue's workers finished, failures included (desk-wide).", []string{"queue"}, nil)
	descFailed    = prometheus.NewDesc("pushdesk_queue_failed_total", "Task runs that failed (desk-wide).", []string{"queue"}, nil)
)

// NewQueueCollector reads the queues through its own Inspector on opt.
// Close it with Close.
func NewQueueCollector(opt asynq.RedisConnOpt) *QueueCollector {
	return &QueueCollector{insp: asynq.NewInspector(opt)}
}

// Close closes the Inspector's Redis client.
func (q *QueueCollector) Close() error { return q.insp.Close() }

// Describe implements prometheus.Collector.
func (q *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTasks, descOldest, descProcessed, descFailed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A queue nothing was ever
// queued on reads as empty; one that cannot be read is left out.
func (q *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, qi := range q.read() {
		gauge := func(state string, n int) {
			ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(n), qi.Queue, state)
		}
		gauge("pending", qi.Pending)
		gauge("active", qi.Active)
		gauge("scheduled", qi.Scheduled)
		gauge("retry", qi.Retry)
		gauge("archived", qi.Archived)
		gauge("aggregating", qi.Aggregating)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, qi.Latency.Seconds(), qi.Queue)
		ch <- prometheus.MustNewConstMetric(descProcessed, prometheus.CounterValue, float64(qi.ProcessedTotal), qi.Queue)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(qi.FailedTotal), qi.Queue)
	}
}

func (q *QueueCollector) read() []*asynq.QueueInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.last != nil && time.Since(q.at) < QueueStatsEvery {
		return q.last
	}
	known, err := q.insp.Queues()
	if err != nil {
		return nil
	}
	var out []*asynq.QueueInfo
	for _, name := range []string{QueueFast, QueueDelayed} {
		if !slices.Contains(known, name) { // nothing was ever queued there
			out = append(out, &asynq.QueueInfo{Queue: name})
			continue
		}
		if qi, err := q.insp.GetQueueInfo(name); err == nil {
			out = append(out, qi)
		}
	}
	q.last, q.at = out, time.Now()
	return out
}
