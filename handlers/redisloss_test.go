package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/internal/testsvc"
)

// Redis restarted without persistence (killed, started empty on the same
// port): the instance notices within seconds, registers its connections
// again and resyncs its clients, so a message accepted while the registry
// was empty reaches the clients that stayed connected, once.
func TestRedisLosingItsDataResyncsConnectedClients(t *testing.T) {
	cmd, url, err := testsvc.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s := startServer(t, func(c *app.Config) { c.RedisURL, c.RunWorkers = url, true })
	const users = 5
	clients := make([]*wsClient, users)
	uids := make([]uint64, users)
	for i := range clients {
		uids[i] = newUID()
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws?token="+mint(t, uids[i]), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		clients[i] = &wsClient{tb: t, conn: conn, wait: 20 * time.Second}
		clients[i].until("hello")
	}
	restarted := testsvc.RestartRedis(t, cmd, url)
	t.Cleanup(func() { _ = restarted.Process.Kill(); _ = restarted.Wait() })

	// Accepted while the registry is empty: stored, pushed to nobody.
	ids := make([]string, users)
	deadline := time.Now().Add(15 * time.Second)
	for i, uid := range uids {
		for {
			code, body := doAt(t, "http://"+s.Addr(), http.MethodPost, "/internal/v1/messages", testIngestKey,
				fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":"while Redis was empty"}}`, uid))
			if code == 202 {
				ids[i] = body["ids"].([]any)[0].(string)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ingest after the Redis restart = %d %v", code, body)
			}
			time.Sleep(100 * time.Millisecond) // the clients reconnect to the new Redis
		}
	}
	// Every client reads all along (as a real one does: it answers the
	// server's pings), keeping the messages it gets.
	got := make([]chan string, users)
	for i, c := range clients {
		got[i] = make(chan string, 64)
		go func() {
			defer close(got[i])
			for {
				_, data, err := c.conn.ReadMessage()
				if err != nil {
					return
				}
				var f frame
				if json.Unmarshal(data, &f) == nil && f.str("type") == "msg" {
					got[i] <- f.str("id")
				}
			}
		}()
	}
	delivered, dup := 0, 0
	for i := range clients {
		seen := 0
		wait := time.After(20 * time.Second)
	read:
		for {
			select {
			case id, ok := <-got[i]:
				if !ok {
					t.Fatalf("client %d was disconnected", i)
				}
				if id == ids[i] {
					seen++
				}
			case <-wait:
				break read
			case <-time.After(time.Second):
				if seen > 0 {
					break read
				}
			}
		}
		if seen > 0 {
			delivered++
		}
		if seen > 1 {
			dup += seen - 1
		}
		waitRows(t, uids[i], 1)
	}
	t.Logf("accepted %d, stored %d, delivered %d, lost %d, pushed twice %d", users, users, delivered, users-delivered, dup)
	if delivered != users || dup > 0 {
		t.Fatalf("%d of %d messages reached their client, %d twice", delivered, users, dup)
	}
}
