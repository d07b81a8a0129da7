package chat

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	waiting, live prometheus.Gauge
	wait          prometheus.Histogram
	assignments   *prometheus.CounterVec
	reassigned    prometheus.Counter
	lines         *prometheus.CounterVec
	repairs       *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pushdesk_chat_conversations_waiting", Help: "Conversations waiting for an agent (desk-wide, as last read)."}),
		live:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "pushdesk_chat_conversations_live", Help: "Conversations open or waiting (desk-wide, as last read)."}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pushdesk_chat_wait_seconds", Help: "From a conversation's first line to its first agent.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}}),
		assignments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pushdesk_chat_assignments_total", Help: "Conversations handed to an agent, by reason."}, []string{"reason"}),
		reassigned:  prometheus.NewCounter(prometheus.CounterOpts{Name: "pushdesk_chat_reassignments_total", Help: "Conversations moved off an agent whose grace ran out, to another agent or back to waiting."}),
		lines:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pushdesk_chat_lines_total", Help: "Chat lines stored, by sender."}, []string{"from"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pushdesk_chat_repairs_total",
			Help: "MySQL rows made to agree with Redis after a failed write, by repair (assign, unassign, close, drop, restore)."}, []string{"repair"}),
	}
	if r != nil {
		r.MustRegister(m.waiting, m.live, m.wait, m.assignments, m.reassigned, m.lines, m.repairs)
	}
	return m
}
