package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pushdesk/pushdesk/app/frames"
	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/pushdesk/pushdesk/internal/luascript"
	"github.com/redis/rueidis"
)

// Routing: each user has a hash pd:uconn:{uid} of instance → connections
// there. A push reads it and publishes once per instance the user is on
// (the local instance is served in-process), so a message costs Redis work
// in proportion to the user's instances, not to the cluster.

// Push sends frames to every connection of uid on any instance.
func (s *Service) Push(ctx context.Context, uid uint64, frames ...hub.Frame) error {
	inst, err := s.Redis.Do(ctx, s.Redis.B().Hgetall().Key(KeyUserConns(uid)).Build()).ToMessage()
	if err != nil {
		return fmt.Errorf("route to %d: %w", uid, err)
	}
	return s.Route(ctx, uid, inst, frames)
}

// Route delivers frames to uid on the instances listed in inst (the
// user's instance → connections hash, KeyUserConns, as a script read it).
func (s *Service) Route(ctx context.Context, uid uint64, inst rueidis.RedisMessage, frames []hub.Frame) error {
	var payload []byte
	var errs []error
	err := luascript.IntPairs(inst, func(id string, n int64) {
		if n <= 0 {
			return
		}
		if id == s.Instance {
			s.deliverLocal(uid, frames)
			return
		}
		if payload == nil {
			payload = EncodeEnvelope(uid, frames)
		}
		heard, err := s.publish(ctx, keyInstanceChannel(id), payload).AsInt64()
		if err != nil {
			errs = append(errs, fmt.Errorf("publish to instance %s: %w", id, err))
		} else if heard == 0 {
			go s.republish(id, uid, frames)
		}
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("route to %d: %w", uid, err))
	}
	return errors.Join(errs...)
}

// republishWaits are the pauses before each new try of a publish nobody
// heard: about 8 s in all, beyond an instance's resubscription after a
// Redis restart.
var republishWaits = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}

// maxRepublishing caps the pushes being tried again at once; beyond it
// they are dropped (the user gets them on the next sync or reconnect).
const maxRepublishing = 1024

// republish tries again to push frames to uid on instance inst, whose
// channel had no subscriber: pub/sub is at-most-once, and an instance
// resubscribing after a Redis restart misses what is published meanwhile.
// It stops once the instance hears it, or is gone (no alive key), or the
// user has no connection there any more. Message pushes carry the user's
// counts read afresh for each try, so a late push does not carry stale
// ones; a control push goes as it was.
func (s *Service) republish(inst string, uid uint64, frames []hub.Frame) {
	if s.republishing.Add(1) > maxRepublishing {
		s.republishing.Add(-1)
		s.Metrics.Errors.WithLabelValues("push retry dropped").Inc()
		if now := time.Now().Unix(); s.republishWarned.Swap(now) != now { // a line a second at most
			s.Log.Warn("pushes nobody heard dropped: too many being retried", "instance", inst)
		}
		return
	}
	defer s.republishing.Add(-1)
	var msgs []hub.Frame
	control := false
	for _, f := range frames {
		switch {
		case strings.HasPrefix(f.Type, "~"):
			control = true
		case f.Type != "unread":
			msgs = append(msgs, f)
		}
	}
	for _, wait := range republishWaits {
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		heard, err := s.republishOnce(ctx, inst, uid, frames, msgs, control)
		cancel()
		if err != nil || heard {
			return
		}
	}
	s.Log.Warn("push to an instance nobody heard", "instance", inst, "uid", uid)
}

// republishOnce is one try of republish; err ends the tries (the
// instance or the user's connections there are gone, or Redis failed).
func (s *Service) republishOnce(ctx context.Context, inst string, uid uint64, frames, msgs []hub.Frame, control bool) (heard bool, err error) {
	res := s.Redis.DoMulti(ctx,
		s.Redis.B().Exists().Key(keyAlive(inst)).Build(),
		s.Redis.B().Hget().Key(KeyUserConns(uid)).Field(inst).Build())
	alive, err := res[0].AsInt64()
	if err != nil || alive == 0 {
		return false, fmt.Errorf("instance %s gone (%v)", inst, err)
	}
	if n, err := res[1].AsInt64(); err != nil || n <= 0 {
		return false, fmt.Errorf("no connection of %d on %s (%v)", uid, inst, err)
	}
	out := frames
	if !control {
		out = msgs
		if f, err := s.Counts(ctx, uid); err == nil {
			out = append(slices.Clip(msgs), f)
		}
	}
	if len(out) == 0 {
		return false, fmt.Errorf("nothing left to push to %d", uid) // counts only, and unreadable now
	}
	n, err := s.publish(ctx, keyInstanceChannel(inst), EncodeEnvelope(uid, out)).AsInt64()
	return n > 0, err
}

// deliverLocal queues frames on uid's connections here; a control frame
// (a type starting with "~", alone) goes to Deps.Control instead.
func (s *Service) deliverLocal(uid uint64, frames []hub.Frame) {
	if len(frames) == 1 && strings.HasPrefix(frames[0].Type, "~") {
		go s.Control(uid, frames[0])
		return
	}
	s.Metrics.Pushed.Add(float64(s.Hub.Deliver(uid, frames...)))
}

// EncodeEnvelope packs frames for one user: "uid\n" then per frame
// "type\tid\tkey\tjson\n". Frame JSON is compact, so it holds no raw newline.
func EncodeEnvelope(uid uint64, frames []hub.Frame) []byte {
	n := 24
	for _, f := range frames {
		n += len(f.Type) + len(f.ID) + len(f.Key) + len(f.Data) + 4
	}
	b := make([]byte, 0, n)
	b = strconv.AppendUint(b, uid, 10)
	b = append(b, '\n')
	for _, f := range frames {
		b = append(b, f.Type...)
		b = append(b, '\t')
		b = append(b, f.ID...)
		b = append(b, '\t')
		b = append(b, f.Key...)
		b = append(b, '\t')
		b = append(b, f.Data...)
		b = append(b, '\n')
	}
	return b
}

// DecodeEnvelope undoes EncodeEnvelope.
func DecodeEnvelope(b []byte) (uint64, []hub.Frame, error) {
	line, rest, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return 0, nil, fmt.Errorf("envelope without uid line")
	}
	uid, err := strconv.ParseUint(string(line), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("envelope uid %q: %w", line, err)
	}
	var out []hub.Frame
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		typ, tail, ok1 := bytes.Cut(line, []byte{'\t'})
		id, tail, ok2 := bytes.Cut(tail, []byte{'\t'})
		key, data, ok3 := bytes.Cut(tail, []byte{'\t'})
		if !ok1 || !ok2 || !ok3 {
			return 0, nil, fmt.Errorf("malformed envelope frame")
		}
		f := hub.Frame{Type: string(typ), ID: string(id), Key: string(key), Data: data}
		if f.Type == "unread" { // keep the counts as the connection's State
			var u frames.Unread
			if g, ok := strings.CutPrefix(f.Key, "g"); ok && json.Unmarshal(data, &u) == nil {
				u.Gen, _ = strconv.ParseInt(g, 10, 64)
				f.State = &u
			}
		}
		out = append(out, f)
	}
	return uid, out, nil
}

// Sharded reports whether Redis is a cluster. The instance channels and
// pd:wake are then sharded channels (SPUBLISH/SSUBSCRIBE, Redis 7.0+):
// each is carried only by the shard that owns its slot, where a plain
// PUBLISH would be copied to every node and would count only the
// receivers connected to the node it was sent to. Registry scripts then
// take one slot's keys each (registry.go).
func (s *Service) Sharded() bool { return s.Redis.Mode() == rueidis.ClientModeCluster }

// publish sends msg on ch: SPUBLISH on a cluster, PUBLISH on a single
// Redis. Either answers how many subscribers heard it.
func (s *Service) publish(ctx context.Context, ch string, msg []byte) rueidis.RedisResult {
	if s.Sharded() {
		return s.Redis.Do(ctx, s.Redis.B().Spublish().Channel(ch).Message(rueidis.BinaryString(msg)).Build())
	}
	return s.Redis.Do(ctx, s.Redis.B().Publish().Channel(ch).Message(rueidis.BinaryString(msg)).Build())
}

// listen receives this instance's channel and pd:wake until Close. On a
// cluster the two are sharded channels in different slots, so each has a
// subscription (and a loop) of its own; on a single Redis one SUBSCRIBE
// takes both.
func (s *Service) listen() {
	defer s.wg.Done()
	ch := keyInstanceChannel(s.Instance)
	if !s.Sharded() {
		s.receive(func() rueidis.Completed { return s.Redis.B().Subscribe().Channel(ch, keyWakeChannel).Build() })
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.receive(func() rueidis.Completed { return s.Redis.B().Ssubscribe().Channel(keyWakeChannel).Build() })
	}()
	s.receive(func() rueidis.Completed { return s.Redis.B().Ssubscribe().Channel(ch).Build() })
}

// receive subscribes with sub() until Close, subscribing again after a
// Redis failure (on a cluster: a failover or a slot moved, after which
// rueidis finds the channel's new shard). Pub/sub is at-most-once: what is
// lost while it is down reaches the user from MySQL on the next sync or
// reconnect.
func (s *Service) receive(sub func() rueidis.Completed) {
	for s.ctx.Err() == nil {
		err := s.Redis.Receive(s.ctx, sub(), s.onMessage)
		if s.ctx.Err() != nil {
			return
		}
		s.Log.Warn("pub/sub interrupted, resubscribing", "err", err)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-s.ctx.Done():
		}
	}
}

// onMessage runs on rueidis's pipeline goroutine: it only hands on.
func (s *Service) onMessage(m rueidis.PubSubMessage) {
	if m.Channel == keyWakeChannel {
		if s.Wake != nil {
			s.Wake()
		}
		return
	}
	msg := []byte(m.Message)
	if rest, ok := bytes.CutPrefix(msg, broadcastPrefix); ok { // a broadcast: fan out off the pipeline
		go s.Broadcast(rest)
		return
	}
	uid, frames, err := DecodeEnvelope(msg)
	if err != nil {
		s.Log.Warn("drop malformed envelope", "err", err)
		return
	}
	s.deliverLocal(uid, frames) // only queues: never blocks the pipeline
}

// broadcastPrefix starts a broadcast's envelope on an instance channel.
var broadcastPrefix = []byte("B\n")

// PublishBroadcast sends a broadcast's envelope (opaque here) to instance
// inst, whose Deps.Broadcast receives it.
func (s *Service) PublishBroadcast(ctx context.Context, inst string, envelope []byte) error {
	msg := append(append([]byte(nil), broadcastPrefix...), envelope...)
	return s.publish(ctx, keyInstanceChannel(inst), msg).Error()
}

// PublishWake tells the worker loops of every process that fast work was
// enqueued: what a process without workers does after an enqueue, since
// it has no loops of its own to wake. Best effort: a loop that misses it
// finds the work by polling.
func (s *Service) PublishWake() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.publish(ctx, keyWakeChannel, []byte("1")).Error(); err != nil {
		s.Log.Warn("publish wake", "err", err)
	}
}
