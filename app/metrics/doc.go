// Package metrics holds the process's Prometheus series. Every app
// package gets the one *Metrics through its constructor and counts into
// it; none registers series of its own here.
package metrics
