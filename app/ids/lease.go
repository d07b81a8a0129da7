package ids

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pushdesk/pushdesk/internal/luascript"
	"github.com/redis/rueidis"
)

// Redis keys: keyNodeCounter suggests node numbers; keyNodeLease(n) holds
// the instance leasing node n, for leaseTTL.
const keyNodeCounter = "pd:node"

func keyNodeLease(n uint64) string { return "pd:nodelease:" + strconv.FormatUint(n, 10) }

// leaseTTL outlives a few missed renewals; a node whose instance died is
// free again after it.
const leaseTTL = time.Minute

var (
	//go:embed lua/renew.lua
	renewSrc    string
	renewScript = luascript.New(renewSrc)
	//go:embed lua/release.lua
	releaseSrc    string
	releaseScript = luascript.New(releaseSrc)
)

// Leased is a Gen on a node number no running instance holds, so two
// instances never make the same id. Renew it well within a minute.
type Leased struct {
	*Gen
	rc       rueidis.Client
	instance string
	log      *slog.Logger
	node     atomic.Uint64
}

// Lease takes a node for instance and returns its generator.
func Lease(ctx context.Context, rc rueidis.Client, instance string, log *slog.Logger) (*Leased, error) {
	node, err := takeNode(ctx, rc, instance)
	if err != nil {
		return nil, err
	}
	l := &Leased{Gen: NewGen(node), rc: rc, instance: instance, log: log}
	l.node.Store(node)
	return l, nil
}

// Node is the node number leased now.
func (l *Leased) Node() uint64 { return l.node.Load() }

func takeNode(ctx context.Context, rc rueidis.Client, instance string) (uint64, error) {
	for range 1024 {
		n, err := rc.Do(ctx, rc.B().Incr().Key(keyNodeCounter).Build()).AsInt64()
		if err != nil {
			return 0, fmt.Errorf("take id node: %w", err)
		}
		node := uint64(n) & 0x3ff
		err = rc.Do(ctx, rc.B().Set().Key(keyNodeLease(node)).Value(instance).Nx().Px(leaseTTL).Build()).Error()
		if err == nil {
			return node, nil
		}
		if !rueidis.IsRedisNil(err) {
			return 0, fmt.Errorf("lease id node: %w", err)
		}
	}
	return 0, fmt.Errorf("all 1024 id nodes are leased")
}

// Renew keeps the node; if another instance holds it now (the lease
// lapsed in a long pause, or Redis lost it and a newcomer took it), it
// leases a fresh node and switches the generator to it.
func (l *Leased) Renew(ctx context.Context) error {
	old := l.node.Load()
	ok, err := renewScript.Exec(ctx, l.rc, []string{keyNodeLease(old)},
		[]string{l.instance, strconv.FormatInt(leaseTTL.Milliseconds(), 10)}).AsInt64()
	if err != nil || ok == 1 {
		return err
	}
	node, err := takeNode(ctx, l.rc, l.instance)
	if err != nil {
		return err
	}
	l.log.Warn("id node lease lost, switched", "old", old, "new", node)
	l.node.Store(node)
	l.SetNode(node)
	return nil
}

// Release gives the node up (at a graceful stop).
func (l *Leased) Release(ctx context.Context) {
	releaseScript.Exec(ctx, l.rc, []string{keyNodeLease(l.node.Load())}, []string{l.instance})
}
