package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// keyIdentity holds the id of the cluster this Redis belongs to; MySQL
// holds the same id (models.Repo.ClusterID).
const keyIdentity = "pd:cluster"

// CheckIdentity makes sure the Redis and the MySQL an instance was given
// belong to the same cluster, and returns its id. A new pair gets a new id
// in both; a Redis that lost its data (restarted without persistence) gets
// MySQL's id back. Two stores of different clusters — an instance pointed
// at another deployment's Redis, say — are refused: instances sharing a
// Redis share its queues and would run each other's tasks against the
// wrong database.
func CheckIdentity(ctx context.Context, rc rueidis.Client, repo *models.Repo) (string, error) {
	mine, err := repo.ClusterID(ctx)
	if err != nil {
		return "", err
	}
	theirs, err := rc.Do(ctx, rc.B().Get().Key(keyIdentity).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		theirs, err = "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the cluster identity in redis: %w", err)
	}
	if mine == "" && theirs != "" { // another instance may have just made the pair: look again
		if mine, err = repo.ClusterID(ctx); err != nil {
			return "", err
		}
	}
	switch {
	case mine == "" && theirs != "":
		return "", fmt.Errorf("redis belongs to cluster %s, but this MySQL database has no cluster record: it is not that cluster's database "+
			"(if it is, a restore or a move, record the id: INSERT INTO cluster_identity (one, id, created_at) VALUES (1, '%s', NOW(3)))", theirs, theirs)
	case mine == "":
		var b [8]byte
		_, _ = rand.Read(b[:])
		if mine, err = repo.ClaimClusterID(ctx, hex.EncodeToString(b[:])); err != nil { // racing instances: one id wins
			return "", err
		}
	}
	if theirs == "" {
		if err := rc.Do(ctx, rc.B().Set().Key(keyIdentity).Value(mine).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
			return "", fmt.Errorf("record the cluster identity in redis: %w", err)
		}
		if theirs, err = rc.Do(ctx, rc.B().Get().Key(keyIdentity).Build()).ToString(); err != nil {
			return "", fmt.Errorf("read the cluster identity in redis: %w", err)
		}
	}
	if theirs != mine {
		return "", fmt.Errorf("redis belongs to cluster %s but MySQL to cluster %s: point PUSHDESK_REDIS_URL and PUSHDESK_MYSQL_DSN at the same deployment", theirs, mine)
	}
	return mine, nil
}
