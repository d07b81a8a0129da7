package migrations

import (
	"context"
	"errors"
	"fmt"

	"github.com/pushdesk/pushdesk/models"
	"github.com/uptrace/bun"
)

// The shard tables' schema, step by step in the order the migrations
// added them. Without a shard map the migrations that own each step run
// it on the main database; with one (PUSHDESK_MYSQL_SHARDS) they skip
// the shards and EnsureShards runs every step, each idempotent, on each
// shard server for the shards it holds, on every migrate. A later
// migration that changes the shard tables adds its step here and runs it
// through eachShard.
var shardSteps = []func(table string) string{
	func(table string) string { return fmt.Sprintf(models.ShardDDL, table) },
	func(table string) string {
		return "ALTER TABLE " + table + " " +
			"ADD COLUMN IF NOT EXISTS collapse_open VARCHAR(170) AS (IF(is_read = 0 AND collapse_key <> '', CONCAT(kind, '/', collapse_key), NULL)) PERSISTENT, " +
			"ADD UNIQUE KEY IF NOT EXISTS uq_collapse (to_uid, collapse_open)"
	},
}

// collapseAppliedDDL creates the record of applied collapsing messages
// (Repo.UpsertCollapsed). It lives beside the shards: on the main
// database, and with a shard map on each shard server too, so the record
// and the row it names commit in one transaction.
const collapseAppliedDDL = `CREATE TABLE IF NOT EXISTS collapse_applied (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  to_uid BIGINT UNSIGNED NOT NULL,
  row_id BIGINT UNSIGNED NOT NULL,
  applied_at DATETIME(3) NOT NULL,
  KEY idx_applied (applied_at)
) ENGINE=InnoDB`

type placedKey struct{}

// shardsPlaced reports whether Run was told that a shard map places the
// shard tables (RunSharded), so the migrations leave them to EnsureShards.
func shardsPlaced(ctx context.Context) bool { return ctx.Value(placedKey{}) != nil }

// eachShard runs step on every shard table of db, unless a shard map
// places them.
func eachShard(ctx context.Context, db *bun.DB, step func(table string) string) error {
	if shardsPlaced(ctx) {
		return nil
	}
	for i := 0; i < models.ShardCount; i++ {
		if _, err := db.ExecContext(ctx, step(fmt.Sprintf("user_push_msg_%d", i))); err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return nil
}

// RunSharded is Run for a deployment with a shard map: the main database
// gets every table but the shards, then EnsureShards prepares each shard
// server. A main database migrated before a map was set keeps its shard
// tables (they are left for the operator to drop once moved: see
// docs/scaling.md).
func RunSharded(ctx context.Context, db *bun.DB, shards *models.Shards) (applied []string, err error) {
	if applied, err = RunWithoutShards(ctx, db); err != nil {
		return applied, err
	}
	return applied, EnsureShards(ctx, shards)
}

// RunWithoutShards is Run leaving the shard tables out: for a deployment
// with a shard map, whose shards EnsureShards prepares where the map says.
func RunWithoutShards(ctx context.Context, db *bun.DB) (applied []string, err error) {
	return Run(context.WithValue(ctx, placedKey{}, true), db)
}

// EnsureShards creates, on each shard server, the shard tables it holds
// (at the current schema) and its collapse_applied table. It is
// idempotent. A server that fails does not stop the others: the errors
// are joined, each naming its server and shards.
func EnsureShards(ctx context.Context, shards *models.Shards) error {
	var errs []error
	for _, srv := range shards.Servers {
		if err := ensureServer(ctx, srv); err != nil {
			errs = append(errs, fmt.Errorf("shard server %s (shards %s): %w", srv.Name, srv.Ranges(), err))
		}
	}
	return errors.Join(errs...)
}

func ensureServer(ctx context.Context, srv *models.ShardServer) error {
	if _, err := srv.DB.ExecContext(ctx, collapseAppliedDDL); err != nil {
		return err
	}
	for _, sh := range srv.Shards {
		table := fmt.Sprintf("user_push_msg_%d", sh)
		for _, step := range shardSteps {
			if _, err := srv.DB.ExecContext(ctx, step(table)); err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
		}
	}
	return nil
}
