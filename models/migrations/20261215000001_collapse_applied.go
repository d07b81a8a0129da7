package migrations

import (
	"context"

	"github.com/uptrace/bun"
)

// collapse_applied holds the ids of messages with a collapse key that were
// stored or merged, each with the row it went into, so a retried delivery
// of one applies nothing (Repo.UpsertCollapsed). One table, not a shard
// per user range: its rows live a retry horizon (pruned by retention on
// applied_at) and are looked up by message id.
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS collapse_applied (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  to_uid BIGINT UNSIGNED NOT NULL,
  row_id BIGINT UNSIGNED NOT NULL,
  applied_at DATETIME(3) NOT NULL,
  KEY idx_applied (applied_at)
) ENGINE=InnoDB`)
		return err
	}, func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS collapse_applied")
		return err
	})
}
