package migrations

import (
	"context"
	"fmt"

	"github.com/pushdesk/pushdesk/models"
	"github.com/uptrace/bun"
)

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		for i := 0; i < models.ShardCount; i++ {
			if _, err := db.ExecContext(ctx, fmt.Sprintf(models.ShardDDL, fmt.Sprintf("user_push_msg_%d", i))); err != nil {
				return fmt.Errorf("create shard %d: %w", i, err)
			}
		}
		return nil
	}, func(ctx context.Context, db *bun.DB) error {
		for i := 0; i < models.ShardCount; i++ {
			if _, err := db.ExecContext(ctx, fmt.Sprintf("DROP TABLE IF EXISTS user_push_msg_%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
}
