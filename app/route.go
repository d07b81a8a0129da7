package app

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

	"github.com/pushdesk/pushdesk/app/hub"
	"github.com/redis/rueidis"
)

// Routing: each user has a hash pd:uconn:{uid} of instance → connections
// there. A push reads it and publishes once per instance the user is on
// (the local instance is served in-process), so a message costs Redis work
// in proportion to the user's instances, not to the cluster.

// pushToUser sends frames to every connection of uid on any instance.
func (a *App) pushToUser(ctx context.Context, uid uint64, frames ...hub.Frame) error {
	inst, err := a.Redis.Do(ctx, a.Redis.B().Hgetall().Key(keyUserConns(uid)).Build()).ToMessage()
	if err != nil {
		return fmt.Errorf("route to %d: %w", uid, err)
	}
	return a.route(ctx, uid, inst, frames)
}

// route delivers frames to uid on the instances listed in inst (the
// user's instance → connections hash).
func (a *App) route(ctx context.Context, uid uint64, inst rueidis.RedisMessage, frames []hub.Frame) error {
	var payload []byte
	var errs []error
	err := intPairs(inst, func(id string, n int64) {
		if n <= 0 {
			return
		}
		if id == a.Instance {
			a.deliverLocal(uid, frames)
			return
		}
		if payload == nil {
			payload = encodeEnvelope(uid, frames)
		}
		heard, err := a.Redis.Do(ctx, a.Redis.B().Publish().Channel(keyInstanceChannel(id)).Message(rueidis.BinaryString(payload)).Build()).AsInt64()
		if err != nil {
			errs = append(errs, fmt.Errorf("publish to instance %s: %w", id, err))
		} else if heard == 0 {
			go a.republish(id, uid, frames)
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
func (a *App) republish(inst string, uid uint64, frames []hub.Frame) {
	if a.republishing.Add(1) > maxRepublishing {
		a.republishing.Add(-1)
		a.Metrics.Errors.WithLabelValues("push retry dropped").Inc()
		if now := time.Now().Unix(); a.republishWarned.Swap(now) != now { // a line a second at most
			a.Log.Warn("pushes nobody heard dropped: too many being retried", "instance", inst)
		}
		return
	}
	defer a.republishing.Add(-1)
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
		case <-a.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		heard, err := a.republishOnce(ctx, inst, uid, frames, msgs, control)
		cancel()
		if err != nil || heard {
			return
		}
	}
	a.Log.Warn("push to an instance nobody heard", "instance", inst, "uid", uid)
}

// republishOnce is one try of republish; err ends the tries (the
// instance or the user's connections there are gone, or Redis failed).
func (a *App) republishOnce(ctx context.Context, inst string, uid uint64, frames, msgs []hub.Frame, control bool) (heard bool, err error) {
	res := a.Redis.DoMulti(ctx,
		a.Redis.B().Exists().Key(keyAlive(inst)).Build(),
		a.Redis.B().Hget().Key(keyUserConns(uid)).Field(inst).Build())
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
		if u, err := a.Unread(ctx, uid); err == nil {
			out = append(slices.Clip(msgs), unreadFrameOf(u))
		}
	}
	if len(out) == 0 {
		return false, fmt.Errorf("nothing left to push to %d", uid) // counts only, and unreadable now
	}
	n, err := a.Redis.Do(ctx, a.Redis.B().Publish().Channel(keyInstanceChannel(inst)).Message(rueidis.BinaryString(encodeEnvelope(uid, out))).Build()).AsInt64()
	return n > 0, err
}

// deliverLocal queues frames on uid's connections here; internal control
// frames are acted on instead.
func (a *App) deliverLocal(uid uint64, frames []hub.Frame) {
	if len(frames) == 1 && frames[0].Type == ctlSegments {
		go a.refreshSegments(uid)
		return
	}
	a.Metrics.Pushed.Add(float64(a.Hub.Deliver(uid, frames...)))
}

// encodeEnvelope packs frames for one user: "uid\n" then per frame
// "type\tid\tkey\tjson\n". Frame JSON is compact, so it holds no raw newline.
func encodeEnvelope(uid uint64, frames []hub.Frame) []byte {
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

func decodeEnvelope(b []byte) (uint64, []hub.Frame, error) {
	line, rest, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return 0, nil, fmt.Errorf("envelope without uid line")
	}
	uid, err := strconv.ParseUint(string(line), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("envelope uid %q: %w", line, err)
	}
	var frames []hub.Frame
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
			var u unreadFrame
			if g, ok := strings.CutPrefix(f.Key, "g"); ok && json.Unmarshal(data, &u) == nil {
				u.gen, _ = strconv.ParseInt(g, 10, 64)
				f.State = &u.Unread
			}
		}
		frames = append(frames, f)
	}
	return uid, frames, nil
}

// listen receives this instance's channel until Close, resubscribing after
// a Redis failure. Pub/sub is at-most-once: what is lost while it is down
// reaches the user from MySQL on the next sync or reconnect.
func (a *App) listen() {
	defer a.wg.Done()
	ch := keyInstanceChannel(a.Instance)
	for a.ctx.Err() == nil {
		err := a.Redis.Receive(a.ctx, a.Redis.B().Subscribe().Channel(ch, keyWakeChannel).Build(), func(m rueidis.PubSubMessage) {
			if m.Channel == keyWakeChannel {
				if f := a.onWake.Load(); f != nil {
					(*f)()
				}
				return
			}
			msg := []byte(m.Message)
			if rest, ok := bytes.CutPrefix(msg, []byte("B\n")); ok { // a broadcast: fan out off the pipeline
				live, frame, err := decodeBroadcastEnvelope(rest)
				if err != nil {
					a.Log.Warn("drop malformed broadcast envelope", "err", err)
					return
				}
				go a.fanOutLocal(live, frame)
				return
			}
			uid, frames, err := decodeEnvelope(msg)
			if err != nil {
				a.Log.Warn("drop malformed envelope", "err", err)
				return
			}
			a.deliverLocal(uid, frames) // only queues: never blocks the pipeline
		})
		if a.ctx.Err() != nil {
			return
		}
		a.Log.Warn("pub/sub interrupted, resubscribing", "err", err)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-a.ctx.Done():
		}
	}
}

// SetOnWake makes wakes published by other processes (PublishWake) call
// f: the worker loops' Waker, in a process that runs workers.
func (a *App) SetOnWake(f func()) { a.onWake.Store(&f) }

// PublishWake tells the worker loops of every process that fast work was
// enqueued: what a process without workers does after an enqueue, since
// it has no loops of its own to wake. Best effort: a loop that misses it
// finds the work by polling.
func (a *App) PublishWake() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.Redis.Do(ctx, a.Redis.B().Publish().Channel(keyWakeChannel).Message("1").Build()).Error(); err != nil {
		a.Log.Warn("publish wake", "err", err)
	}
}
