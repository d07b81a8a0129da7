package app

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// The connection registry lives in Redis:
//
//	pd:uconn:{uid}     hash instance → that user's connections there (routing)
//	pd:iconn:{inst}    hash conn id → "uid|role|transport|connected ms"
//	pd:alive:{inst}    exists while the instance runs (TTL aliveTTL)
//	pd:instances       set of registered instances
//	pd:online          users with at least one connection anywhere
//
// Each instance refreshes its alive key every aliveEvery and reconciles
// its own entries with its hub when they disagree (after a Redis restart
// that lost data, or a sweep that ran during a long pause). Every instance
// sweeps instances whose alive key is gone: their users lose that instance
// from pd:uconn, and the instance's keys are deleted.
const (
	aliveEvery = 5 * time.Second
	aliveTTL   = 15 * time.Second
	sweepEvery = 10 * time.Second
	sweepBatch = 500
)

// registerScript records one connection. KEYS: uconn, iconn, online.
// ARGV: instance, conn id, info.
var registerScript = newLuaScript(`
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n == 1 and redis.call('HLEN', KEYS[1]) == 1 then redis.call('INCR', KEYS[3]) end
return n`)

// unregisterScript removes one connection (no-op if already removed).
var unregisterScript = newLuaScript(`
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DECR', KEYS[3]) end
return n`)

// sweepUserScript drops a dead instance from one user. KEYS: uconn,
// online. ARGV: instance.
var sweepUserScript = newLuaScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DECR', KEYS[2])
end
return 1`)

func connInfo(c *hub.Client, at time.Time) string {
	return fmt.Sprintf("%d|%s|%s|%d", c.UID, c.Role, c.Transport, at.UnixMilli())
}

func (a *App) registerConn(ctx context.Context, c *hub.Client) error {
	return registerScript.Exec(ctx, a.Redis, []string{keyUserConns(c.UID), keyInstanceConns(a.Instance), keyOnline},
		[]string{a.Instance, c.ConnID, connInfo(c, time.Now())}).Error()
}

func (a *App) unregisterConn(ctx context.Context, c *hub.Client) error {
	return a.unregisterID(ctx, c.UID, c.ConnID)
}

func (a *App) unregisterID(ctx context.Context, uid uint64, connID string) error {
	return unregisterScript.Exec(ctx, a.Redis, []string{keyUserConns(uid), keyInstanceConns(a.Instance), keyOnline},
		[]string{a.Instance, connID}).Error()
}

// announce registers the instance and its liveness at start.
func (a *App) announce(ctx context.Context) error {
	cmds := rueidis.Commands{
		a.Redis.B().Sadd().Key(keyInstances).Member(a.Instance).Build(),
		a.Redis.B().Set().Key(keyAlive(a.Instance)).Value(strconv.FormatInt(time.Now().UnixMilli(), 10)).Px(aliveTTL).Build(),
	}
	for _, r := range a.Redis.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("announce instance: %w", err)
		}
	}
	return nil
}

// renewScript extends a lease only while it is still ours; 0 = lost.
var renewScript = newLuaScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0 end
return 0`)

// releaseScript deletes a lease only if it is ours.
var releaseScript = newLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// renewNode keeps this instance's id node; if another instance holds it
// now (the lease lapsed in a long pause, or Redis lost it and a newcomer
// took it), it leases a fresh node and switches the generator to it.
func (a *App) renewNode(ctx context.Context) error {
	ok, err := renewScript.Exec(ctx, a.Redis, []string{keyNodeLease(a.node.Load())},
		[]string{a.Instance, strconv.FormatInt(nodeLeaseTTL.Milliseconds(), 10)}).AsInt64()
	if err != nil || ok == 1 {
		return err
	}
	node, err := leaseNode(ctx, a.Redis, a.Instance)
	if err != nil {
		return err
	}
	a.Log.Warn("id node lease lost, switched", "old", a.node.Load(), "new", node)
	a.node.Store(node)
	a.IDs.SetNode(node)
	return nil
}

// retire removes this instance's registry entries at a graceful stop
// (after every client was disconnected).
// If the sweep fails the instance stays listed, dead (no alive key), and a
// survivor sweeps it.
func (a *App) retire(ctx context.Context) {
	a.Redis.Do(ctx, a.Redis.B().Del().Key(keyAlive(a.Instance), keyInstanceStats(a.Instance)).Build())
	releaseScript.Exec(ctx, a.Redis, []string{keyNodeLease(a.node.Load())}, []string{a.Instance})
	if err := a.sweep(ctx, a.Instance); err != nil {
		a.Log.Warn("retire: sweep of own connections failed; a survivor will finish it", "err", err)
		return
	}
	a.Redis.Do(ctx, a.Redis.B().Srem().Key(keyInstances).Member(a.Instance).Build())
}

// keepAlive refreshes the alive key and stats, reconciles the registry
// with the hub when needed, and sweeps dead instances, until Close.
func (a *App) keepAlive() {
	defer a.wg.Done()
	alive := time.NewTicker(aliveEvery)
	defer alive.Stop()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-alive.C:
			ctx, cancel := context.WithTimeout(a.ctx, aliveEvery)
			if err := a.refresh(ctx); err != nil {
				a.Log.Warn("registry refresh", "err", err)
			}
			cancel()
		case <-sweep.C:
			ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
			if err := a.sweepDead(ctx); err != nil {
				a.Log.Warn("registry sweep", "err", err)
			}
			cancel()
		}
	}
}

func (a *App) refresh(ctx context.Context) error {
	conns, users := a.Hub.Stats()
	res := a.Redis.DoMulti(ctx,
		a.Redis.B().Set().Key(keyAlive(a.Instance)).Value(strconv.FormatInt(time.Now().UnixMilli(), 10)).Get().Px(aliveTTL).Build(),
		a.Redis.B().Sadd().Key(keyInstances).Member(a.Instance).Build(),
		a.Redis.B().Hlen().Key(keyInstanceConns(a.Instance)).Build(),
		a.Redis.B().Hset().Key(keyInstanceStats(a.Instance)).FieldValue().FieldValue("connections", strconv.Itoa(conns)).FieldValue("users", strconv.Itoa(users)).Build(),
		a.Redis.B().Pexpire().Key(keyInstanceStats(a.Instance)).Milliseconds(int64(aliveTTL/time.Millisecond)).Build(),
	)
	for _, r := range res {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return err
		}
	}
	if err := a.renewNode(ctx); err != nil {
		return err
	}
	wasAlive := res[0].Error() == nil
	registered, _ := res[2].AsInt64()
	if wasAlive && int(registered) == conns {
		a.mismatches = 0
		return nil
	}
	// While clients come and go the two counts pass each other: only a
	// mismatch seen twice in a row (or a lost alive key) means drift.
	if a.mismatches++; wasAlive && a.mismatches < 2 {
		return nil
	}
	a.mismatches = 0
	a.Log.Info("reconciling registry", "was_alive", wasAlive, "registered", registered, "local", conns)
	return a.reconcile(ctx)
}

// reconcile makes this instance's Redis entries match its hub.
func (a *App) reconcile(ctx context.Context) error {
	local := map[string]*hub.Client{}
	a.Hub.Each(func(c *hub.Client) { local[c.ConnID] = c })
	seen := map[string]bool{}
	var cursor uint64
	for {
		e, err := a.Redis.Do(ctx, a.Redis.B().Hscan().Key(keyInstanceConns(a.Instance)).Cursor(cursor).Count(sweepBatch).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(e.Elements); i += 2 {
			id := e.Elements[i]
			seen[id] = true
			if _, ok := local[id]; ok {
				continue
			}
			// Not in the snapshot: gone, or connected since it was taken
			// (Connect adds to the hub before it registers, so asking the
			// hub now tells them apart).
			uid, _ := strconv.ParseUint(strings.SplitN(e.Elements[i+1], "|", 2)[0], 10, 64)
			if !a.Hub.Has(uid, id) {
				if err := a.unregisterID(ctx, uid, id); err != nil {
					return err
				}
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	for id, c := range local {
		if !seen[id] && a.Hub.Has(c.UID, id) {
			if err := a.registerConn(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// sweepDead cleans up after instances whose alive key expired.
func (a *App) sweepDead(ctx context.Context) error {
	insts, err := a.Redis.Do(ctx, a.Redis.B().Smembers().Key(keyInstances).Build()).AsStrSlice()
	if err != nil {
		return err
	}
	for _, inst := range insts {
		if inst == a.Instance {
			continue
		}
		n, err := a.Redis.Do(ctx, a.Redis.B().Exists().Key(keyAlive(inst)).Build()).AsInt64()
		if err != nil || n == 1 {
			continue
		}
		// One sweeper per dead instance.
		if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keySweep(inst)).Value(a.Instance).Nx().Ex(time.Minute).Build()).Error(); err != nil {
			continue
		}
		a.Log.Warn("instance is gone, cleaning up its connections", "dead", inst)
		if err := a.sweep(ctx, inst); err != nil {
			// Still listed, so the next pass (here or elsewhere) tries again.
			a.Log.Warn("sweep failed, will retry", "dead", inst, "err", err)
			a.Redis.Do(ctx, a.Redis.B().Del().Key(keySweep(inst)).Build())
			continue
		}
		a.Redis.DoMulti(ctx,
			a.Redis.B().Srem().Key(keyInstances).Member(inst).Build(),
			a.Redis.B().Del().Key(keyInstanceStats(inst)).Build())
	}
	return nil
}

// sweep removes every connection of inst from the registry, in batches,
// and logs them as lost. It is safe to repeat after a failure.
func (a *App) sweep(ctx context.Context, inst string) error {
	key := keyInstanceConns(inst)
	var cursor uint64
	now := time.Now().UTC()
	for {
		e, err := a.Redis.Do(ctx, a.Redis.B().Hscan().Key(key).Cursor(cursor).Count(sweepBatch).Build()).AsScanEntry()
		if err != nil {
			return fmt.Errorf("scan connections of %s: %w", inst, err)
		}
		var execs []rueidis.LuaExec
		for i := 0; i+1 < len(e.Elements); i += 2 {
			f := strings.Split(e.Elements[i+1], "|")
			uid, _ := strconv.ParseUint(f[0], 10, 64)
			execs = append(execs, rueidis.LuaExec{Keys: []string{keyUserConns(uid), keyOnline}, Args: []string{inst}})
			if inst != a.Instance && len(f) >= 3 {
				a.logConn(models.ConnEvent{UID: uid, ConnID: e.Elements[i], InstanceID: inst, Transport: f[2], Role: f[1], Event: "lost", At: now})
			}
		}
		if len(execs) > 0 {
			for _, r := range sweepUserScript.ExecMulti(ctx, a.Redis, execs...) {
				if err := r.Error(); err != nil {
					return fmt.Errorf("drop %s from its users: %w", inst, err)
				}
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	return a.Redis.Do(ctx, a.Redis.B().Del().Key(key).Build()).Error()
}

// Presence is GET /internal/v1/users/{uid}/presence.
type Presence struct {
	Online      bool       `json:"online"`
	Connections int64      `json:"connections"`
	LastSeen    *time.Time `json:"last_seen"`
}

// UserPresence returns uid's presence across instances.
func (a *App) UserPresence(ctx context.Context, uid uint64) (Presence, error) {
	inst, err := a.Redis.Do(ctx, a.Redis.B().Hgetall().Key(keyUserConns(uid)).Build()).AsIntMap()
	if err != nil {
		return Presence{}, err
	}
	var p Presence
	for _, n := range inst {
		p.Connections += max(n, 0)
	}
	p.Online = p.Connections > 0
	seen, err := a.LastSeen(ctx, []uint64{uid})
	if err != nil {
		return Presence{}, err
	}
	if !seen[0].IsZero() {
		t := seen[0].UTC().Truncate(time.Second)
		p.LastSeen = &t
	}
	return p, nil
}

// InstanceStats is one instance's line in Stats.
type InstanceStats struct {
	ID          string `json:"id"`
	Alive       bool   `json:"alive"`
	Connections int64  `json:"connections"`
	Users       int64  `json:"users"`
}

// Stats is GET /internal/v1/stats.
type Stats struct {
	Connections int64           `json:"connections"`
	OnlineUsers int64           `json:"online_users"`
	Instances   []InstanceStats `json:"instances"`
	This        string          `json:"this_instance"`
}

// ClusterStats returns cluster-wide and per-instance counts.
func (a *App) ClusterStats(ctx context.Context) (Stats, error) {
	insts, err := a.Redis.Do(ctx, a.Redis.B().Smembers().Key(keyInstances).Build()).AsStrSlice()
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Instances: []InstanceStats{}, This: a.Instance}
	for _, inst := range insts {
		res := a.Redis.DoMulti(ctx,
			a.Redis.B().Exists().Key(keyAlive(inst)).Build(),
			a.Redis.B().Hlen().Key(keyInstanceConns(inst)).Build(),
			a.Redis.B().Hget().Key(keyInstanceStats(inst)).Field("users").Build())
		alive, _ := res[0].AsInt64()
		conns, _ := res[1].AsInt64()
		users, _ := res[2].AsInt64()
		is := InstanceStats{ID: inst, Alive: alive == 1, Connections: conns, Users: users}
		if inst == a.Instance {
			c, u := a.Hub.Stats()
			is.Connections, is.Users = int64(c), int64(u)
		}
		if is.Alive {
			st.Connections += is.Connections
		}
		st.Instances = append(st.Instances, is)
	}
	online, err := a.Redis.Do(ctx, a.Redis.B().Get().Key(keyOnline).Build()).AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		return Stats{}, err
	}
	st.OnlineUsers = max(online, 0)
	return st, nil
}
