// Package migrations holds the schema history, one bun migration per file
// (named YYYYMMDDHHMMSS_name.go), and Run, which applies what is missing.
package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// Migrations is the registry every migration file adds itself to.
var Migrations = migrate.NewMigrations()

// lockName is the MySQL named lock that keeps instances starting together
// from migrating at once. A named lock dies with its session, so a crashed
// migrator never leaves the schema locked (bun's lock table would).
const lockName = "pushdesk_migrate"

// Run applies every pending migration and returns the names of those it
// applied (none when the schema was up to date), as their files are named
// without ".go". It is idempotent and safe to call from several processes
// at once.
func Run(ctx context.Context, db *bun.DB) (applied []string, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	var got int
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 120)", lockName).Scan(&got); err != nil || got != 1 {
		return nil, fmt.Errorf("migrate: take lock %s: got %d: %v", lockName, got, err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", lockName) //nolint:errcheck // released with the session anyway

	m := migrate.NewMigrator(db, Migrations, migrate.WithTableName("pushdesk_migrations"), migrate.WithLocksTableName("pushdesk_migration_locks"))
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("migrate init: %w", err)
	}
	group, err := m.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	for _, mg := range group.Migrations {
		name := mg.Name // its file's name: the time, then what it does
		if mg.Comment != "" {
			name += "_" + mg.Comment
		}
		applied = append(applied, name)
	}
	return applied, nil
}
