package jobs

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app/rawio"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// The dial hook hands go-redis a raw-call connection.
func TestRawDialWrapsTCP(t *testing.T) {
	var d net.Dialer
	dial := rawDial{}.DialHook(d.DialContext)
	opt, err := asynq.ParseRedisURI(testsvc.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(context.Background(), "tcp", opt.(asynq.RedisClientOpt).Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*rawio.Conn); !ok && rawio.Enabled {
		t.Fatalf("dialled %T, not a raw-call connection", c)
	}
}

// A client made through RawIO works against the real Redis, with values
// far larger than one socket read or write.
func TestRawIOClientAgainstRedis(t *testing.T) {
	opt := RawIO(testRedisOpt(t))
	c := opt.MakeRedisClient().(redis.UniversalClient)
	defer c.Close()
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	if err := c.Set(ctx, "rawio:big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "rawio:big").Bytes()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}
