package migrations

import (
	"context"
	"fmt"

	"github.com/pushdesk/pushdesk/models"
	"github.com/uptrace/bun"
)

// collapse_open is (kind, collapse_key) while a collapsible message is
// unread and NULL otherwise; unique per user, it lets one upsert merge a
// new message into the open one without a race.
func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		for i := 0; i < models.ShardCount; i++ {
			q := fmt.Sprintf("ALTER TABLE user_push_msg_%d "+
				"ADD COLUMN IF NOT EXISTS collapse_open VARCHAR(170) AS (IF(is_read = 0 AND collapse_key <> '', CONCAT(kind, '/', collapse_key), NULL)) PERSISTENT, "+
				"ADD UNIQUE KEY IF NOT EXISTS uq_collapse (to_uid, collapse_open)", i)
			if _, err := db.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("shard %d: %w", i, err)
			}
		}
		return nil
	}, func(ctx context.Context, db *bun.DB) error {
		for i := 0; i < models.ShardCount; i++ {
			q := fmt.Sprintf("ALTER TABLE user_push_msg_%d DROP KEY IF EXISTS uq_collapse, DROP COLUMN IF EXISTS collapse_open", i)
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}
