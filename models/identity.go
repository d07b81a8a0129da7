package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ClusterID returns the cluster id this database belongs to ("" when none
// was recorded yet).
func (r *Repo) ClusterID(ctx context.Context) (string, error) {
	var id string
	err := r.DB.QueryRowContext(ctx, "SELECT id FROM cluster_identity WHERE one = 1").Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cluster identity: %w", err)
	}
	return id, nil
}

// ClaimClusterID records id as this database's cluster unless one is
// recorded already, and returns the one recorded.
func (r *Repo) ClaimClusterID(ctx context.Context, id string) (string, error) {
	if _, err := r.DB.ExecContext(ctx, "INSERT IGNORE INTO cluster_identity (one, id, created_at) VALUES (1, ?, ?)", id, time.Now().UTC()); err != nil {
		return "", fmt.Errorf("record cluster identity: %w", err)
	}
	return r.ClusterID(ctx)
}
