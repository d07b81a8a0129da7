package session

import (
	"context"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
)

// syncTimeout bounds one sync: the settle (2 s at most), fresh counts and
// the replay queries.
const syncTimeout = 10 * time.Second

// serveSync answers {"type":"sync"} on c: it waits for deliveries in
// flight, sends fresh counts and replays the unread messages. It runs off
// the connection's read loop, through c.Coalesce: syncs that arrive while
// one runs make it run once more, never once each.
func (s *Service) serveSync(c *hub.Client) {
	ctx, cancel := context.WithTimeout(s.ctx, syncTimeout)
	defer cancel()
	go func() { // a client that leaves ends the sync
		select {
		case <-c.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if _, err := s.settledReplay(ctx, c, 0); err != nil {
		select {
		case <-c.Done(): // gone: nobody to tell
		default:
			s.frameFailed(c, "sync", err)
		}
	}
}
