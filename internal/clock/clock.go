// Package clock is the time activity routing, last seen and retention
// read; tests move it forward instead of sleeping.
package clock

import (
	"sync/atomic"
	"time"
)

// Clock is the time used for activity routing, last seen and retention.
// Tests move it forward instead of sleeping. Safe for concurrent use.
type Clock struct {
	offset atomic.Int64 // added to the wall clock, in ns
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock by d (negative to go back).
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// Reset puts the clock back on the wall clock.
func (c *Clock) Reset() { c.offset.Store(0) }
