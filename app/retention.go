package app

import (
	"context"
	"fmt"
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
// counter cache rebuilt.
func (a *App) PurgeExpired(ctx context.Context) (int64, error) {
	cutoff := a.Clock.Now().Add(-a.Cfg.Retention).UTC()
	var total int64
	for shard := 0; shard < models.ShardCount; shard++ {
		for {
			n, unreadOf, err := a.Repo.DeleteOlder(ctx, shard, cutoff, purgeBatch)
			if err != nil {
				return total, fmt.Errorf("purge shard %d: %w", shard, err)
			}
			total += int64(n)
			if len(unreadOf) > 0 {
				if err := a.resetUnread(ctx, unreadOf...); err != nil {
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
		a.Log.Info("retention purge", "deleted", total, "cutoff", cutoff)
	}
	return total, nil
}
