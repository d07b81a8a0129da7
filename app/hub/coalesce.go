package hub

// Coalesce: work a client asks for again while it runs (sync) runs once
// more, not once per request.

// Coalesce runs fn on a goroutine of its own, one run at a time per
// client: a call while a run is under way makes that run go once more
// when it ends, however many calls came meanwhile. fn must do the same
// work whichever call passed it (the repeat runs the first call's fn).
// It is how a client's sync frames are served: a flood of them costs two
// runs, and the last run starts after the last frame.
func (c *Client) Coalesce(fn func()) {
	for {
		switch c.coalesced.Load() {
		case 0:
			if c.coalesced.CompareAndSwap(0, 1) {
				go c.runCoalesced(fn)
				return
			}
		case 1:
			if c.coalesced.CompareAndSwap(1, 2) {
				return
			}
		default: // a repeat is due already
			return
		}
	}
}

func (c *Client) runCoalesced(fn func()) {
	for {
		fn()
		if c.coalesced.CompareAndSwap(1, 0) {
			return
		}
		c.coalesced.Store(1) // it was 2: once more
	}
}
