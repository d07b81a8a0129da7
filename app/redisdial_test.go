package app

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/pushdesk/pushdesk/app/rawio"
	"github.com/redis/rueidis"
)

// A unix-socket Redis URL keeps its own dial (rueidis.ParseURL sets one),
// now with raw socket calls.
func TestRedisDialKeepsAUnixSocketDial(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = io.Copy(c, c) // echo
			c.Close()
		}
	}()
	opt, err := rueidis.ParseURL("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if opt.DialCtxFn == nil {
		t.Fatal("rueidis no longer sets a dial for unix sockets; this test needs another way in")
	}
	c, err := redisDial(opt.DialCtxFn)(context.Background(), opt.InitAddress[0], &opt.Dialer, opt.TLSConfig)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	defer c.Close()
	if _, ok := c.(*rawio.Conn); !ok && rawio.Enabled {
		t.Fatalf("dialled %T, want raw socket calls", c)
	}
	if _, err := c.Write([]byte("PING")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "PING" {
		t.Fatalf("echo = %q, %v", b, err)
	}
}

// Without a dial of its own, a TCP address is dialled and wrapped.
func TestRedisDialTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0") // a listener of its own, not the developer's Redis
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var d net.Dialer
	c, err := redisDial(nil)(context.Background(), l.Addr().String(), &d, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*rawio.Conn); !ok && rawio.Enabled {
		t.Fatalf("dialled %T, want raw socket calls", c)
	}
}
