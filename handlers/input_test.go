package handlers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pushdesk/pushdesk/app/auth"
	"github.com/pushdesk/pushdesk/app/delivery"
	"github.com/pushdesk/pushdesk/app/input"
	"github.com/pushdesk/pushdesk/app/session"
	"github.com/pushdesk/pushdesk/models"
)

func TestUserCannotTouchAnotherUsersMessages(t *testing.T) {
	alice, bob := newUID(), newUID()
	bobMsg := send(t, bob, "comment", "for bob only")
	waitRows(t, bob, 1)
	tokA := mint(t, alice)
	if _, body := post(t, "/api/v1/me/read", tokA, fmt.Sprintf(`{"ids":[%q]}`, bobMsg)); body["updated"].(float64) != 0 {
		t.Fatalf("alice read bob's = %v, want updated 0", body)
	}
	if _, body := post(t, "/api/v1/me/ack", tokA, fmt.Sprintf(`{"ids":[%q]}`, bobMsg)); body["acked"].(float64) != 0 {
		t.Fatalf("alice acked bob's = %v, want acked 0", body)
	}
	post(t, "/api/v1/me/read", tokA, `{"all":true}`)
	_, body := do(t, http.MethodGet, "/api/v1/me/messages", tokA, "")
	if n := len(body["messages"].([]any)); n != 0 {
		t.Fatalf("alice lists %d messages, want 0", n)
	}
	if code, _ := do(t, http.MethodGet, "/api/v1/me/messages?before="+bobMsg, tokA, ""); code != 400 {
		t.Fatalf("alice paging from bob's id = %d, want 400", code)
	}
	ws := dialWS(t, alice)
	ws.until("hello")
	ws.send(fmt.Sprintf(`{"type":"read","ids":[%q]}`, bobMsg))
	ws.send(`{"type":"ping"}`)
	ws.until("pong")
	if total, unacked := unreadOf(t, bob); total != 1 || unacked != 1 {
		t.Fatalf("bob unread = %d/%d, want 1/1 after alice's attempts", total, unacked)
	}
	var isRead bool
	if err := testDB.QueryRow("SELECT is_read FROM "+models.ShardTable(bob)+" WHERE id = ?", bobMsg).Scan(&isRead); err != nil || isRead {
		t.Fatalf("bob's row is_read = %v (%v), want false", isRead, err)
	}
}

func TestBadTokensGet401(t *testing.T) {
	tokens := auth.NewTokens(testSecret)
	expired, _ := tokens.Mint(auth.Identity{UID: 7}, -time.Minute)
	justExpired, _ := tokens.Mint(auth.Identity{UID: 7}, -2*time.Second) // no grace after exp
	wrongKey, _ := auth.NewTokens("other-secret").Mint(auth.Identity{UID: 7}, time.Hour)
	cases := []struct{ name, token string }{
		{"missing", ""}, {"garbage", "not.a.jwt"}, {"expired", expired}, {"just expired", justExpired}, {"wrong secret", wrongKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, res, err := websocket.DefaultDialer.Dial(wsURL+"/ws?token="+tc.token, nil)
			if err == nil || res == nil || res.StatusCode != 401 {
				t.Fatalf("ws dial = %v %v, want 401", res, err)
			}
			req, _ := http.NewRequest(http.MethodGet, baseURL+"/sse?token="+tc.token, nil)
			r, err := http.DefaultClient.Do(req)
			if err != nil || r.StatusCode != 401 {
				t.Fatalf("sse = %v %v, want 401", r, err)
			}
			r.Body.Close()
			code, body := do(t, http.MethodGet, "/api/v1/me/unread", tc.token, "")
			if code != 401 || body["error"].(map[string]any)["code"] != "unauthorized" {
				t.Fatalf("unread = %d %v, want 401 unauthorized", code, body)
			}
		})
	}
}

func TestIngestRejectsInvalidBodies(t *testing.T) {
	big := `{"to_uid":1,"kind":"comment","body":{"x":"` + strings.Repeat("a", input.MaxBodyBytes) + `"}}`
	many := make([]string, delivery.MaxRecipients+1)
	for i := range many {
		many[i] = fmt.Sprint(i + 1)
	}
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"not json", `{"to_uid":`, 400, "invalid_json"},
		{"array", `[1]`, 400, "invalid_json"},
		{"no recipient", `{"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"both recipients", `{"to_uid":1,"to_uids":[2],"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"uid string", `{"to_uid":"1","kind":"comment","body":{}}`, 400, "invalid_input"},
		{"uid zero", `{"to_uid":0,"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"uid negative", `{"to_uid":-4,"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"uid fraction", `{"to_uid":1.5,"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"uids empty", `{"to_uids":[],"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"uids too many", `{"to_uids":[` + strings.Join(many, ",") + `],"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"uids bad item", `{"to_uids":[1,"x"],"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"uids not array", `{"to_uids":5,"kind":"comment","body":{}}`, 400, "invalid_input"},
		{"kind missing", `{"to_uid":1,"body":{}}`, 400, "invalid_input"},
		{"kind uppercase", `{"to_uid":1,"kind":"Comment","body":{}}`, 400, "invalid_input"},
		{"kind too long", `{"to_uid":1,"kind":"` + strings.Repeat("k", 33) + `","body":{}}`, 400, "invalid_input"},
		{"kind number", `{"to_uid":1,"kind":5,"body":{}}`, 400, "invalid_input"},
		{"body missing", `{"to_uid":1,"kind":"comment"}`, 400, "invalid_input"},
		{"body string", `{"to_uid":1,"kind":"comment","body":"hi"}`, 400, "invalid_input"},
		{"body array", `{"to_uid":1,"kind":"comment","body":[1]}`, 400, "invalid_input"},
		{"body too large", big, 413, "body_too_large"},
		{"collapse_key number", `{"to_uid":1,"kind":"comment","body":{},"collapse_key":3}`, 400, "invalid_input"},
		{"idempotency_key too long", `{"to_uid":1,"kind":"comment","body":{},"idempotency_key":"` + strings.Repeat("i", 129) + `"}`, 400, "invalid_input"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, "/internal/v1/messages", testIngestKey, tc.body)
			e, _ := body["error"].(map[string]any)
			if code != tc.status || e == nil || e["code"] != tc.code || e["message"] == "" {
				t.Fatalf("POST = %d %v, want %d %s", code, body, tc.status, tc.code)
			}
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		if code, body := post(t, "/internal/v1/messages", "nope", `{"to_uid":1,"kind":"c","body":{}}`); code != 401 || body["error"] == nil {
			t.Fatalf("POST = %d %v, want 401", code, body)
		}
	})
	t.Run("user token is not the ingest key", func(t *testing.T) {
		if code, _ := post(t, "/internal/v1/messages", mint(t, 1), `{"to_uid":1,"kind":"c","body":{}}`); code != 401 {
			t.Fatalf("POST = %d, want 401", code)
		}
	})
}

func TestIngestManyRecipients(t *testing.T) {
	a, b := newUID(), newUID()
	code, body := post(t, "/internal/v1/messages", testIngestKey, fmt.Sprintf(`{"to_uids":[%d,%d,%d],"kind":"system","body":{"n":1}}`, a, b, a))
	if code != 202 || body["accepted"].(float64) != 2 || len(body["ids"].([]any)) != 2 || body["duplicate"] != false {
		t.Fatalf("POST = %d %v, want 202 accepted 2 (duplicate uid folded)", code, body)
	}
	waitRows(t, a, 1)
	waitRows(t, b, 1)
}

func TestOversizeFrameClosesWith1009(t *testing.T) {
	ws := dialWS(t, newUID())
	ws.until("hello")
	big := `{"type":"ping","pad":"` + strings.Repeat("x", session.MaxFrameBytes) + `"}`
	_ = ws.conn.WriteMessage(websocket.TextMessage, []byte(big))
	_ = ws.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := ws.conn.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("read after oversize frame: %v, want close 1009", err)
		}
		return
	}
}

func TestInvalidFramesGetErrorAndConnectionLives(t *testing.T) {
	uid := newUID()
	ws := dialWS(t, uid)
	ws.until("hello")
	for _, bad := range []string{`not json`, `{"type":"dance"}`, `{"no":"type"}`, `{"type":"ack","ids":["x"]}`, `{"type":"ack"}`, `[]`} {
		ws.send(bad)
		if f := ws.until("error"); f.num("code") != 400 || f.str("msg") == "" {
			t.Fatalf("error for %s = %v, want code 400 with msg", bad, f)
		}
	}
	ws.send(`{"type":"ping"}`)
	ws.until("pong")
	id := send(t, uid, "comment", "still here")
	if m := ws.until("msg"); m.str("id") != id {
		t.Fatalf("msg = %v, want %s", m, id)
	}
}

// tokenKey is the Redis key of a cached user-center answer.
func tokenKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return "pd:tok:" + hex.EncodeToString(sum[:])
}
