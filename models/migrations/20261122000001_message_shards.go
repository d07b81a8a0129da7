package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

func init() {
	Migrations.MustRegister(func(ctx context.Context, db *bun.DB) error {
		if err := eachShard(ctx, db, shardSteps[0]); err != nil {
			return fmt.Errorf("create shards: %w", err)
		}
		return nil
	}, func(ctx context.Context, db *bun.DB) error {
		return eachShard(ctx, db, func(table string) string { return "DROP TABLE IF EXISTS " + table })
	})
}
