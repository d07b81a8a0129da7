package handlers

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// send posts a message to uid and returns its id.
func send(tb testing.TB, uid uint64, kind, text string) string {
	tb.Helper()
	code, body := post(tb, "/internal/v1/messages", testIngestKey,
		fmt.Sprintf(`{"to_uid":%d,"kind":%q,"body":{"text":%q}}`, uid, kind, text))
	if code != 202 {
		tb.Fatalf("ingest = %d %v, want 202", code, body)
	}
	return body["ids"].([]any)[0].(string)
}

type frame map[string]any

// wsClient is a test WebSocket client.
type wsClient struct {
	tb   testing.TB
	conn *websocket.Conn
	wait time.Duration // how long next waits; zero means 5 s
}

func dialWS(tb testing.TB, uid uint64) *wsClient {
	tb.Helper()
	conn, res, err := websocket.DefaultDialer.Dial(wsURL+"/ws?token="+mint(tb, uid), nil)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		tb.Fatalf("dial ws for %d: %v (status %d)", uid, err, status)
	}
	tb.Cleanup(func() { conn.Close() })
	return &wsClient{tb: tb, conn: conn}
}

func (c *wsClient) send(v string) {
	c.tb.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
		c.tb.Fatalf("write %s: %v", v, err)
	}
}

// next returns the next frame, failing after c.wait (5 s).
func (c *wsClient) next() frame {
	c.tb.Helper()
	wait := c.wait
	if wait == 0 {
		wait = 5 * time.Second
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		c.tb.Fatalf("read frame: %v", err)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.tb.Fatalf("frame is not JSON: %s", data)
	}
	return f
}

// until reads frames until one of type typ arrives and returns it.
func (c *wsClient) until(typ string) frame {
	c.tb.Helper()
	for {
		if f := c.next(); f.str("type") == typ {
			return f
		}
	}
}

// sseClient is a test SSE client.
type sseClient struct {
	tb   testing.TB
	res  *http.Response
	rd   *bufio.Reader
	evts chan sseEvent
}

type sseEvent struct {
	event, id string
	data      frame
}

// dialSSE opens /sse; lastEventID "q:<id>" puts the id in the query
// (last_event_id) instead of the Last-Event-ID header.
func dialSSE(tb testing.TB, uid uint64, lastEventID string) *sseClient {
	tb.Helper()
	url := baseURL + "/sse"
	if id, ok := strings.CutPrefix(lastEventID, "q:"); ok {
		url, lastEventID = url+"?last_event_id="+id, ""
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+mint(tb, uid))
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("sse: %v", err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		tb.Fatalf("sse = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	c := &sseClient{tb: tb, res: res, rd: bufio.NewReader(res.Body), evts: make(chan sseEvent, 64)}
	tb.Cleanup(func() { res.Body.Close() })
	go c.loop()
	return c
}

func (c *sseClient) loop() {
	defer close(c.evts)
	var ev sseEvent
	for {
		line, err := c.rd.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if ev.event != "" {
				c.evts <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			_ = json.Unmarshal([]byte(line[6:]), &ev.data)
		}
	}
}

func (c *sseClient) until(event string) sseEvent {
	c.tb.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-c.evts:
			if !ok {
				c.tb.Fatalf("sse stream ended waiting for %s", event)
			}
			if ev.event == event {
				return ev
			}
		case <-timeout:
			c.tb.Fatalf("no sse %s event in 5s", event)
		}
	}
}
