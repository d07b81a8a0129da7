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

// resyncAtOnce bounds the clients ResyncAll brings up to date at the same
// time: each costs a few MySQL queries when the counters are gone too.
const resyncAtOnce = 32

// ResyncAll runs a sync for every client of this instance, as if each
// had sent {"type":"sync"}: fresh counts and the unread replay (clients
// dedupe by id). Used when Redis lost its data, so pushes made while the
// registry was empty reach the clients that stayed connected.
func (s *Service) ResyncAll() {
	var clients []*hub.Client
	s.Hub.Each(func(c *hub.Client) { clients = append(clients, c) })
	turns := make(chan struct{}, resyncAtOnce)
	for _, c := range clients {
		select {
		case turns <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		if !s.background(func() {
			defer func() { <-turns }()
			s.serveSync(c)
		}) {
			return
		}
	}
}
