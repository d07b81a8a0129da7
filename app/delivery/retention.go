package delivery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pushdesk/pushdesk/models"
)

// Retention deletes in small batches with a pause between them, so no
// shard is locked for long and replication keeps up.
const (
	purgeBatch = 500
	purgePause = 20 * time.Millisecond
)

// PurgeExpired deletes messages older than the retention from every shard
// and returns how many went. Users who lost unread messages get their
// counter cache rebuilt. They are noted in Redis before their rows go and
// forgotten only once reset, so a reset that fails (or a purge that dies
// between the delete and the reset) is finished by the next purge: their
// rows are gone by then, and nothing else would find them. It also
// forgets which collapsing messages were applied, once past
// collapseAppliedKeep.
func (s *Service) PurgeExpired(ctx context.Context) (int64, error) {
	if err := s.resetPurged(ctx); err != nil {
		return 0, err
	}
	cutoff := s.Clock.Now().Add(-s.Retention).UTC()
	var total int64
	// With a shard map, a server that fails (down, say) has its shards
	// skipped and is reported at the end: the others' are purged all the
	// same. With one server, a failure ends the run as it always did.
	var failed []error
	down := map[int]bool{}
shards:
	for shard := 0; shard < models.ShardCount; shard++ {
		server := s.Repo.ServerOf(uint64(shard))
		if down[server] {
			continue
		}
		for {
			n, noted, err := s.purgeBatch(ctx, shard, cutoff)
			if err != nil {
				err = fmt.Errorf("purge shard %d: %w", shard, err)
				if ctx.Err() != nil || s.Repo.ServerCount() == 1 {
					return total, err
				}
				failed = append(failed, fmt.Errorf("%w (the rest of its server's shards skipped)", err))
				down[server] = true
				continue shards
			}
			total += int64(n)
			if noted {
				if err := s.resetPurged(ctx); err != nil {
					return total, err
				}
			}
			if n < purgeBatch {
				break
			}
			select {
			case <-time.After(purgePause):
			case <-ctx.Done():
				return total, ctx.Err()
			}
		}
	}
	if total > 0 {
		s.Log.Info("retention purge", "deleted", total, "cutoff", cutoff)
	}
	if err := s.pruneCollapseApplied(ctx); err != nil {
		failed = append(failed, err)
	}
	return total, errors.Join(failed...)
}

// collapseAppliedKeep is how long the record that a collapsing message was
// applied is kept (see models.Repo.UpsertCollapsed): a retried delivery
// within it changes nothing. A delivery's own retries end within about 40
// minutes (jobs: 20 retries at most 64 s apart, 60 s each); this is the
// ingest idempotency window, so a repeat within 25 h is harmless whichever
// way it comes back, with room for a backlog or a stopped worker fleet.
const collapseAppliedKeep = idemTTL

// pruneCollapseApplied forgets collapse records older than
// collapseAppliedKeep, a batch at a time, on each server holding shards;
// one that fails does not hold up the others.
func (s *Service) pruneCollapseApplied(ctx context.Context) error {
	cutoff := s.Clock.Now().Add(-collapseAppliedKeep).UTC()
	var failed []error
	for server := range s.Repo.ServerCount() {
		for {
			n, err := s.Repo.DeleteCollapseAppliedBefore(ctx, server, cutoff, purgeBatch)
			if err != nil {
				failed = append(failed, fmt.Errorf("prune collapse records: %w", err))
				break
			}
			if n < purgeBatch {
				break
			}
			select {
			case <-time.After(purgePause):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return errors.Join(failed...)
}

// purgeBatch deletes up to purgeBatch expired rows of one shard, first
// noting in keyPurgeReset the users who lose unread ones (noted reports
// whether there were any). It leaves their counters to resetPurged.
func (s *Service) purgeBatch(ctx context.Context, shard int, cutoff time.Time) (n int, noted bool, err error) {
	n, err = s.Repo.DeleteOlder(ctx, shard, cutoff, purgeBatch, func(unreadOf []uint64) error {
		members := make([]string, len(unreadOf))
		for i, u := range unreadOf {
			members[i] = strconv.FormatUint(u, 10)
		}
		noted = true
		return s.Redis.Do(ctx, s.Redis.B().Sadd().Key(keyPurgeReset).Member(members...).Build()).Error()
	})
	return n, noted, err
}

// resetPurged resets the counters of the users in keyPurgeReset, a batch
// at a time, and forgets each batch once it is reset.
func (s *Service) resetPurged(ctx context.Context) error {
	for {
		members, err := s.Redis.Do(ctx, s.Redis.B().Srandmember().Key(keyPurgeReset).Count(purgeBatch).Build()).AsStrSlice()
		if err != nil {
			return fmt.Errorf("read users to reset after a purge: %w", err)
		}
		if len(members) == 0 {
			return nil
		}
		uids := make([]uint64, 0, len(members))
		for _, m := range members {
			if u, err := strconv.ParseUint(m, 10, 64); err == nil {
				uids = append(uids, u)
			}
		}
		if err := s.Reset(ctx, uids...); err != nil {
			return fmt.Errorf("reset counters after a purge: %w", err)
		}
		if err := s.Redis.Do(ctx, s.Redis.B().Srem().Key(keyPurgeReset).Member(members...).Build()).Error(); err != nil {
			return err
		}
	}
}
