package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "embed"

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/internal/luascript"
	"github.com/pushdesk/pushdesk/models"
	"github.com/redis/rueidis"
)

// The registry: each instance refreshes its alive key every aliveEvery
// and reconciles its own entries with its hub when they disagree (after a
// Redis restart that lost data, or a sweep that ran during a long pause).
// Every instance sweeps instances whose alive key is gone: their users
// lose that instance from pd:uconn, and the instance's keys are deleted
// (see keys.go for the keys).
const (
	aliveEvery = 5 * time.Second
	aliveTTL   = 15 * time.Second
	sweepEvery = 10 * time.Second
	sweepBatch = 500
)

var (
	//go:embed lua/register.lua
	registerSrc    string
	registerScript = luascript.New(registerSrc)
	//go:embed lua/unregister.lua
	unregisterSrc    string
	unregisterScript = luascript.New(unregisterSrc)
	//go:embed lua/sweep_user.lua
	sweepUserSrc    string
	sweepUserScript = luascript.New(sweepUserSrc)
)

func connInfo(c *hub.Client, at time.Time) string {
	return fmt.Sprintf("%d|%s|%s|%d", c.UID, c.Role, c.Transport, at.UnixMilli())
}

// On a single Redis, a connection is recorded (and removed) in the
// user's uconn, the instance's iconn and pd:online by one script. On a
// cluster those are three slots: iconn is written first (its HSETNX or
// HDEL is what makes a repeat a no-op), then the user's script, then
// pd:online. A process that dies between the steps can leave pd:online
// (a count for /internal/v1/stats) one off; routing is kept by the sweep,
// which works from iconn.

func (s *Service) Register(ctx context.Context, c *hub.Client) error {
	args := []string{s.Instance, c.ConnID, connInfo(c, time.Now())}
	if !s.Sharded() {
		return registerScript.Exec(ctx, s.Redis, []string{KeyUserConns(c.UID), keyInstanceConns(s.Instance), keyOnline}, args).Error()
	}
	n, err := s.Redis.Do(ctx, s.Redis.B().Hsetnx().Key(keyInstanceConns(s.Instance)).Field(c.ConnID).Value(args[2]).Build()).AsInt64()
	if err != nil || n == 0 {
		return err
	}
	return s.countOnline(ctx, registerScript.Exec(ctx, s.Redis, []string{KeyUserConns(c.UID)}, args), 1)
}

func (s *Service) Unregister(ctx context.Context, c *hub.Client) error {
	return s.unregisterID(ctx, c.UID, c.ConnID)
}

func (s *Service) unregisterID(ctx context.Context, uid uint64, connID string) error {
	args := []string{s.Instance, connID}
	if !s.Sharded() {
		return unregisterScript.Exec(ctx, s.Redis, []string{KeyUserConns(uid), keyInstanceConns(s.Instance), keyOnline}, args).Error()
	}
	n, err := s.Redis.Do(ctx, s.Redis.B().Hdel().Key(keyInstanceConns(s.Instance)).Field(connID).Build()).AsInt64()
	if err != nil || n == 0 {
		return err
	}
	return s.countOnline(ctx, unregisterScript.Exec(ctx, s.Redis, []string{KeyUserConns(uid)}, args), -1)
}

// countOnline adds by to pd:online when a cluster's register or
// unregister script says the user came online or went offline.
func (s *Service) countOnline(ctx context.Context, r rueidis.RedisResult, by int64) error {
	reply, err := r.AsIntSlice()
	if err != nil {
		return err
	}
	if len(reply) == 2 && reply[1] == 1 {
		return s.Redis.Do(ctx, s.Redis.B().Incrby().Key(keyOnline).Increment(by).Build()).Error()
	}
	return nil
}

// announce registers the instance and its liveness at start.
func (s *Service) announce(ctx context.Context) error {
	cmds := rueidis.Commands{
		s.Redis.B().Sadd().Key(keyInstances).Member(s.Instance).Build(),
		s.Redis.B().Set().Key(keyAlive(s.Instance)).Value(strconv.FormatInt(time.Now().UnixMilli(), 10)).Px(aliveTTL).Build(),
	}
	for _, r := range s.Redis.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("announce instance: %w", err)
		}
	}
	return nil
}

// retire removes this instance's registry entries at a graceful stop
// (after every client was disconnected).
// If the sweep fails the instance stays listed, dead (no alive key), and a
// survivor sweeps it.
func (s *Service) retire(ctx context.Context) {
	s.Redis.Do(ctx, s.Redis.B().Del().Key(keyAlive(s.Instance), keyInstanceStats(s.Instance)).Build())
	s.IDs.Release(ctx)
	if err := s.sweep(ctx, s.Instance); err != nil {
		s.Log.Warn("retire: sweep of own connections failed; a survivor will finish it", "err", err)
		return
	}
	s.Redis.Do(ctx, s.Redis.B().Srem().Key(keyInstances).Member(s.Instance).Build())
}

// keepAlive refreshes the alive key and stats, reconciles the registry
// with the hub when needed, and sweeps dead instances, until Close.
func (s *Service) keepAlive() {
	defer s.wg.Done()
	alive := time.NewTicker(aliveEvery)
	defer alive.Stop()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-alive.C:
			ctx, cancel := context.WithTimeout(s.ctx, aliveEvery)
			if err := s.refresh(ctx); err != nil {
				s.Log.Warn("registry refresh", "err", err)
			}
			cancel()
		case <-sweep.C:
			ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
			if err := s.sweepDead(ctx); err != nil {
				s.Log.Warn("registry sweep", "err", err)
			}
			cancel()
		}
	}
}

func (s *Service) refresh(ctx context.Context) error {
	conns, users := s.Hub.Stats()
	res := s.Redis.DoMulti(ctx,
		s.Redis.B().Set().Key(keyAlive(s.Instance)).Value(strconv.FormatInt(time.Now().UnixMilli(), 10)).Get().Px(aliveTTL).Build(),
		s.Redis.B().Sadd().Key(keyInstances).Member(s.Instance).Build(),
		s.Redis.B().Hlen().Key(keyInstanceConns(s.Instance)).Build(),
		s.Redis.B().Hset().Key(keyInstanceStats(s.Instance)).FieldValue().FieldValue("connections", strconv.Itoa(conns)).FieldValue("users", strconv.Itoa(users)).Build(),
		s.Redis.B().Pexpire().Key(keyInstanceStats(s.Instance)).Milliseconds(int64(aliveTTL/time.Millisecond)).Build(),
		s.Redis.B().Get().Key(keyIdentity).Build(),
	)
	for _, r := range res {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return err
		}
	}
	if err := s.IDs.Renew(ctx); err != nil {
		return err
	}
	if rueidis.IsRedisNil(res[5].Error()) {
		return s.recover(ctx)
	}
	wasAlive := res[0].Error() == nil
	registered, _ := res[2].AsInt64()
	if wasAlive && int(registered) == conns {
		s.mismatches = 0
		return nil
	}
	// While clients come and go the two counts pass each other: only a
	// mismatch seen twice in a row (or a lost alive key) means drift.
	if s.mismatches++; wasAlive && s.mismatches < 2 {
		return nil
	}
	s.mismatches = 0
	s.Log.Info("reconciling registry", "was_alive", wasAlive, "registered", registered, "local", conns)
	return s.reconcile(ctx)
}

// recover runs when the cluster's identity key is gone from Redis: Redis
// lost its data (restarted without persistence, or flushed). Every
// instance notices within aliveEvery: it puts the identity back,
// registers its connections again at once (until then no push finds
// them), and has Deps.Resync bring its clients up to date, since pushes
// made meanwhile did not reach them.
func (s *Service) recover(ctx context.Context) error {
	s.Log.Warn("redis lost its data: registering this instance's connections again and resyncing its clients")
	s.Metrics.Errors.WithLabelValues("redis data lost").Inc()
	if err := s.Redis.Do(ctx, s.Redis.B().Set().Key(keyIdentity).Value(s.Identity).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
		return err
	}
	s.mismatches = 0
	err := s.reconcile(ctx)
	go s.Resync()
	return err
}

// reconcile makes this instance's Redis entries match its hub.
func (s *Service) reconcile(ctx context.Context) error {
	local := map[string]*hub.Client{}
	s.Hub.Each(func(c *hub.Client) { local[c.ConnID] = c })
	seen := map[string]bool{}
	var cursor uint64
	for {
		e, err := s.Redis.Do(ctx, s.Redis.B().Hscan().Key(keyInstanceConns(s.Instance)).Cursor(cursor).Count(sweepBatch).Build()).AsScanEntry()
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
			if !s.Hub.Has(uid, id) {
				if err := s.unregisterID(ctx, uid, id); err != nil {
					return err
				}
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	for id, c := range local {
		if !seen[id] && s.Hub.Has(c.UID, id) {
			if err := s.Register(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// sweepDead cleans up after instances whose alive key expired.
func (s *Service) sweepDead(ctx context.Context) error {
	insts, err := s.Redis.Do(ctx, s.Redis.B().Smembers().Key(keyInstances).Build()).AsStrSlice()
	if err != nil {
		return err
	}
	for _, inst := range insts {
		if inst == s.Instance {
			continue
		}
		n, err := s.Redis.Do(ctx, s.Redis.B().Exists().Key(keyAlive(inst)).Build()).AsInt64()
		if err != nil || n == 1 {
			continue
		}
		// One sweeper per dead instance.
		if err := s.Redis.Do(ctx, s.Redis.B().Set().Key(keySweep(inst)).Value(s.Instance).Nx().Ex(time.Minute).Build()).Error(); err != nil {
			continue
		}
		s.Log.Warn("instance is gone, cleaning up its connections", "dead", inst)
		if err := s.sweep(ctx, inst); err != nil {
			// Still listed, so the next pass (here or elsewhere) tries again.
			s.Log.Warn("sweep failed, will retry", "dead", inst, "err", err)
			s.Redis.Do(ctx, s.Redis.B().Del().Key(keySweep(inst)).Build())
			continue
		}
		s.Redis.DoMulti(ctx,
			s.Redis.B().Srem().Key(keyInstances).Member(inst).Build(),
			s.Redis.B().Del().Key(keyInstanceStats(inst)).Build())
	}
	return nil
}

// sweep removes every connection of inst from the registry, in batches,
// and logs them as lost. It is safe to repeat after a failure.
func (s *Service) sweep(ctx context.Context, inst string) error {
	key := keyInstanceConns(inst)
	var cursor uint64
	now := time.Now().UTC()
	for {
		e, err := s.Redis.Do(ctx, s.Redis.B().Hscan().Key(key).Cursor(cursor).Count(sweepBatch).Build()).AsScanEntry()
		if err != nil {
			return fmt.Errorf("scan connections of %s: %w", inst, err)
		}
		var execs []rueidis.LuaExec
		for i := 0; i+1 < len(e.Elements); i += 2 {
			f := strings.Split(e.Elements[i+1], "|")
			uid, _ := strconv.ParseUint(f[0], 10, 64)
			keys := []string{KeyUserConns(uid), keyOnline}
			if s.Sharded() {
				keys = keys[:1] // pd:online is in another slot: counted below
			}
			execs = append(execs, rueidis.LuaExec{Keys: keys, Args: []string{inst}})
			if inst != s.Instance && len(f) >= 3 {
				s.LogConn(models.ConnEvent{UID: uid, ConnID: e.Elements[i], InstanceID: inst, Transport: f[2], Role: f[1], Event: "lost", At: now})
			}
		}
		if len(execs) > 0 {
			var offline int64
			for _, r := range sweepUserScript.ExecMulti(ctx, s.Redis, execs...) {
				n, err := r.AsInt64()
				if err != nil {
					return fmt.Errorf("drop %s from its users: %w", inst, err)
				}
				offline += n
			}
			if s.Sharded() && offline > 0 {
				if err := s.Redis.Do(ctx, s.Redis.B().Decrby().Key(keyOnline).Decrement(offline).Build()).Error(); err != nil {
					return fmt.Errorf("count %s's users offline: %w", inst, err)
				}
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	return s.Redis.Do(ctx, s.Redis.B().Del().Key(key).Build()).Error()
}

// Connections counts uid's connections on every instance.
func (s *Service) Connections(ctx context.Context, uid uint64) (int64, error) {
	inst, err := s.Redis.Do(ctx, s.Redis.B().Hgetall().Key(KeyUserConns(uid)).Build()).AsIntMap()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range inst {
		n += max(c, 0)
	}
	return n, nil
}

// Alive reports whether instance inst is running (its alive key is up).
func (s *Service) Alive(ctx context.Context, inst string) (bool, error) {
	n, err := s.Redis.Do(ctx, s.Redis.B().Exists().Key(keyAlive(inst)).Build()).AsInt64()
	return n == 1, err
}

// Instances lists the registered instances, running or not yet swept.
func (s *Service) Instances(ctx context.Context) ([]string, error) {
	return s.Redis.Do(ctx, s.Redis.B().Smembers().Key(keyInstances).Build()).AsStrSlice()
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

// Stats returns cluster-wide and per-instance counts.
func (s *Service) Stats(ctx context.Context) (Stats, error) {
	insts, err := s.Redis.Do(ctx, s.Redis.B().Smembers().Key(keyInstances).Build()).AsStrSlice()
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Instances: []InstanceStats{}, This: s.Instance}
	for _, inst := range insts {
		res := s.Redis.DoMulti(ctx,
			s.Redis.B().Exists().Key(keyAlive(inst)).Build(),
			s.Redis.B().Hlen().Key(keyInstanceConns(inst)).Build(),
			s.Redis.B().Hget().Key(keyInstanceStats(inst)).Field("users").Build())
		alive, _ := res[0].AsInt64()
		conns, _ := res[1].AsInt64()
		users, _ := res[2].AsInt64()
		is := InstanceStats{ID: inst, Alive: alive == 1, Connections: conns, Users: users}
		if inst == s.Instance {
			c, u := s.Hub.Stats()
			is.Connections, is.Users = int64(c), int64(u)
		}
		if is.Alive {
			st.Connections += is.Connections
		}
		st.Instances = append(st.Instances, is)
	}
	online, err := s.Redis.Do(ctx, s.Redis.B().Get().Key(keyOnline).Build()).AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		return Stats{}, err
	}
	st.OnlineUsers = max(online, 0)
	return st, nil
}
