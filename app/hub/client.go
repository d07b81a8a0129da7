package hub

import (
	"sync"
	"sync/atomic"
	"time"
)

// Frame is one server → client object. Data is the whole JSON object; Type
// and ID are repeated outside it for transports that need them (SSE's
// "event:" and "id:" lines, replay dedupe).
type Frame struct {
	Type string
	ID   string
	Data []byte
	// Key identifies a message version (id and count) for replay dedupe;
	// empty for frames that are never deduplicated.
	Key string
	// Shared, when set, lets transports encode a frame sent to many
	// connections (a broadcast) once.
	Shared *Shared
	// State, when set, is what the frame tells the client in a form the
	// app can reuse (an unread frame's counts). The client keeps the last
	// one queued (see Client.State).
	State any
}

// Shared caches one transport encoding of a frame. Safe for concurrent use.
type Shared struct {
	once sync.Once
	v    any
}

// Get returns the cached value, building it on first use.
func (s *Shared) Get(build func() any) any {
	s.once.Do(func() { s.v = build() })
	return s.v
}

// replayMemory is how long after a replay live frames with a replayed key
// are still dropped: a worker that stored a message just before the replay
// query may push it just after.
const replayMemory = 10 * time.Second

// Close codes the hub uses (WebSocket numbering; SSE maps them to events).
const (
	CloseNormal    = 1000
	CloseGoingAway = 1001
	CloseTooBig    = 1009
	CloseRestart   = 1012
	CloseTryLater  = 1013
	ClosePolicy    = 1008
)

// MaxQueuedBytes is how much a client may have waiting to be written (its
// frames' bytes plus FrameOverhead each) before it counts as a slow
// consumer and is closed with 1013: a replay of 100 messages with 16 KiB
// bodies (about 1.6 MiB) fits with room to spare, and a peer that stopped
// reading holds no more than this. While a replay runs, the live frames
// held back may take half of it.
const MaxQueuedBytes = 4 << 20

// FrameOverhead is what a queued frame costs beyond its bytes (the Frame
// itself, its key), counted against MaxQueuedBytes so that a flood of tiny
// frames is bounded too.
const FrameOverhead = 128

// queuedCost is what frames count against MaxQueuedBytes.
func queuedCost(frames []Frame) int {
	n := 0
	for i := range frames {
		n += len(frames[i].Data) + FrameOverhead
	}
	return n
}

// Writer is a transport's output side. Write and Ping are only ever called
// from the client's write loop, never concurrently.
type Writer interface {
	// Write sends frames in order and flushes them.
	Write(frames []Frame) error
	// Ping sends a keep-alive (a WebSocket ping, an SSE comment).
	Ping() error
	// Close tells the peer why the connection ends and closes it.
	Close(code int, reason string)
}

// Client is one live connection. Send may be called from any goroutine;
// the transport's write loop (Run) is the only writer.
type Client struct {
	UID       uint64
	ConnID    string
	Role      string
	Transport string // "ws" or "sse"
	// Name is the display name from the token (set before the client is
	// shared).
	Name string
	// LastTouch is when the app last recorded this peer as alive (unix ns).
	LastTouch atomic.Int64

	pos int // in the hub's connection order; guarded by its lock

	coalesced atomic.Int32 // see Coalesce: 0 idle, 1 running, 2 running and due again

	segments atomic.Pointer[map[string]struct{}]

	mu        sync.Mutex
	state     any // see State
	queue     []Frame
	queued    int     // queuedCost of queue and of the batch being written
	pending   []Frame // live frames held back while the unread replay runs
	held      int     // queuedCost of pending
	replaying bool
	replayed  map[string]struct{}
	forgetAt  time.Time
	closed    bool
	code      int
	reason    string
	notify    chan struct{}
	done      chan struct{}
}

// NewClient returns a client in replay mode: frames sent with Send are held
// until EndReplay, so the replay and live stream do not interleave.
func NewClient(uid uint64, connID, role, transport string) *Client {
	c := &Client{
		UID: uid, ConnID: connID, Role: role, Transport: transport,
		replaying: true,
		notify:    make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	c.LastTouch.Store(time.Now().UnixNano())
	return c
}

// Deliver queues frames on every client of uid here and returns how many
// clients took them.
func (h *Hub) Deliver(uid uint64, frames ...Frame) int {
	s := h.shard(uid)
	s.mu.RLock()
	list := s.users[uid]
	var stack [4]*Client
	targets := append(stack[:0], list...)
	s.mu.RUnlock()
	n := 0
	for _, c := range targets {
		if c.Send(frames...) {
			n++
		}
	}
	return n
}

// Send queues live frames. It reports false when the client is closed. A
// client whose queue passes MaxQueuedBytes (a peer that stopped reading)
// is closed with 1013 so it reconnects and resyncs instead of holding
// memory.
func (c *Client) Send(frames ...Frame) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.note(frames)
	if c.replaying {
		cost := queuedCost(frames)
		if c.held+cost > MaxQueuedBytes/2 { // room left for the replay itself
			c.mu.Unlock()
			c.Close(CloseTryLater, "slow consumer")
			return false
		}
		c.pending = append(c.pending, frames...)
		c.held += cost
		c.mu.Unlock()
		return true
	}
	if c.replayed != nil {
		frames = c.dropReplayedLocked(frames)
	}
	return c.enqueueLocked(frames)
}

// wake tells the write loop there is work.
func (c *Client) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// note keeps the State of the last of frames that has one. Called with
// c.mu held, so the state kept is that of the frames queued last.
func (c *Client) note(frames []Frame) {
	for i := len(frames) - 1; i >= 0; i-- {
		if st := frames[i].State; st != nil {
			c.state = st // a plain field: an atomic one would box st per call
			return
		}
	}
}

// State returns the State of the last frame queued with one (nil if none):
// what this connection was last told, for an update relative to it.
func (c *Client) State() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// dropReplayedLocked removes frames the last replay already carried.
func (c *Client) dropReplayedLocked(frames []Frame) []Frame {
	if time.Now().After(c.forgetAt) {
		c.replayed = nil
		return frames
	}
	var keep []Frame
	for i, f := range frames {
		if _, dup := c.replayed[f.Key]; f.Key != "" && dup {
			if keep == nil {
				keep = append(make([]Frame, 0, len(frames)), frames[:i]...)
			}
			continue
		}
		if keep != nil {
			keep = append(keep, f)
		}
	}
	if keep == nil {
		return frames
	}
	return keep
}

// SendDirect queues frames ahead of held live frames (hello, replay).
func (c *Client) SendDirect(frames ...Frame) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.note(frames)
	return c.enqueueLocked(frames)
}

// enqueueLocked appends frames and wakes the writer; it unlocks c.mu.
func (c *Client) enqueueLocked(frames []Frame) bool {
	cost := queuedCost(frames)
	if c.queued+cost > MaxQueuedBytes {
		c.mu.Unlock()
		c.Close(CloseTryLater, "slow consumer")
		return false
	}
	c.queue = append(c.queue, frames...)
	c.queued += cost
	c.mu.Unlock()
	c.wake()
	return true
}

// EndReplay releases the live frames held during replay, dropping message
// frames whose key the replay already carried; for a while after, live
// frames with those keys are dropped too.
func (c *Client) EndReplay(replayed map[string]struct{}) {
	c.mu.Lock()
	c.replaying = false
	if len(replayed) > 0 { // added to, not replaced: a sync may have replayed meanwhile
		m := c.replayedLocked(len(replayed))
		for k := range replayed {
			m[k] = struct{}{}
		}
	}
	held := c.pending
	c.pending, c.held = nil, 0
	if c.closed || len(held) == 0 {
		c.mu.Unlock()
		return
	}
	c.enqueueLocked(c.dropReplayedLocked(held))
}

// Replay queues replayed frames ahead of live ones and remembers their
// keys, as EndReplay does, for a client already streaming (a sync).
func (c *Client) Replay(frames []Frame) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.note(frames)
	m := c.replayedLocked(len(frames))
	for _, f := range frames {
		if f.Key != "" {
			m[f.Key] = struct{}{}
		}
	}
	c.enqueueLocked(frames)
}

// replayedLocked returns the set of replayed keys to add to (a new one
// when the last has been forgotten) and remembers it replayMemory longer.
func (c *Client) replayedLocked(size int) map[string]struct{} {
	if c.replayed == nil || time.Now().After(c.forgetAt) {
		c.replayed = make(map[string]struct{}, size)
	}
	c.forgetAt = time.Now().Add(replayMemory)
	return c.replayed
}

// Close ends the client with a close code; the write loop tells the peer.
// Safe to call more than once; the first code wins.
func (c *Client) Close(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.code, c.reason = code, reason
	c.mu.Unlock()
	close(c.done)
}

// Done is closed when the client is closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Run is the write loop: it drains the queue into w and pings every
// heartbeat until the client is closed or a write fails. It returns the
// write error, if any. It must run on exactly one goroutine.
func (c *Client) Run(w Writer, heartbeat time.Duration) error {
	ping := time.NewTicker(heartbeat)
	defer ping.Stop()
	end := func(code int, reason string, err error) error {
		c.Close(code, reason)
		w.Close(code, reason)
		return err
	}
	var batch []Frame
	for {
		select {
		case <-c.notify:
			c.mu.Lock()
			batch, c.queue = c.queue, batch[:0]
			// The batch counts until it is out: a peer that stopped
			// reading holds it as much as the queue behind it.
			writing := c.queued
			c.mu.Unlock()
			if len(batch) == 0 {
				continue
			}
			err := w.Write(batch)
			clear(batch) // let the frames' bytes go
			c.mu.Lock()
			c.queued -= writing
			c.mu.Unlock()
			if err != nil {
				return end(CloseGoingAway, "write failed", err)
			}
		case <-ping.C:
			if err := w.Ping(); err != nil {
				return end(CloseGoingAway, "ping failed", err)
			}
		case <-c.done:
			c.mu.Lock()
			code, reason, rest := c.code, c.reason, c.queue
			c.queue, c.queued = nil, 0
			c.mu.Unlock()
			if len(rest) > 0 && code != CloseTryLater {
				_ = w.Write(rest) // best effort: what was queued before the close
			}
			return end(code, reason, nil)
		}
	}
}

// SetSegments replaces the broadcast segments the client belongs to.
func (c *Client) SetSegments(segs []string) {
	m := make(map[string]struct{}, len(segs))
	for _, s := range segs {
		m[s] = struct{}{}
	}
	c.segments.Store(&m)
}

// InSegment reports whether a broadcast to segment reaches the client.
func (c *Client) InSegment(segment string) bool {
	if segment == "all" {
		return true
	}
	m := c.segments.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[segment]
	return ok
}
