package jobs

import (
	"context"
	"net"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app/rawio"
	"github.com/redis/go-redis/v9"
)

// RawIO makes every go-redis client opt creates (for asynq's clients,
// servers and inspectors) use raw socket calls (package rawio), as the
// rest of the server does.
func RawIO(opt asynq.RedisConnOpt) asynq.RedisConnOpt { return rawOpt{opt} }

type rawOpt struct{ asynq.RedisConnOpt }

func (o rawOpt) MakeRedisClient() any {
	c := o.RedisConnOpt.MakeRedisClient()
	if u, ok := c.(redis.UniversalClient); ok {
		u.AddHook(rawDial{})
	}
	return c
}

// rawDial wraps each connection go-redis dials; TLS connections stay as
// they are (rawio.Wrap leaves what it cannot reach under).
type rawDial struct{}

func (rawDial) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return rawio.Wrap(c), nil
	}
}

func (rawDial) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (rawDial) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
