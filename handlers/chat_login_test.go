package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/models"
)

// login posts a console login and returns the status, the Retry-After
// header and the token, if any.
func (d *desk) login(email, password string) (int, string, string) {
	d.tb.Helper()
	body := fmt.Sprintf(`{"email":%q,"password":%q}`, email, password)
	res, err := http.Post(d.base+"/console/api/login", "application/json", strings.NewReader(body))
	if err != nil {
		d.tb.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Token string }
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, res.Header.Get("Retry-After"), out.Token
}

// A console login: a wrong password is 401, the right one gives an agent
// token that /ws takes as the agent, and failures past the limit are 429
// with Retry-After, even for the right password. (app/chat's login tests
// count the limits per email and per address.)
func TestConsoleLogin(t *testing.T) {
	d := newDesk(t)
	ctx := context.Background()
	email := fmt.Sprintf("lena-%d@example.com", newUID())
	agent, password, err := chat.AddAgent(ctx, &models.ChatRepo{DB: d.srv.App.DB}, email, "Lena")
	if err != nil {
		t.Fatal(err)
	}
	if code, _, tok := d.login(email, "not it"); code != 401 || tok != "" {
		t.Fatalf("wrong password = %d, token %q; want 401 and none", code, tok)
	}
	code, _, tok := d.login(strings.ToUpper(email), password)
	if code != 200 || tok == "" {
		t.Fatalf("right password = %d, token %q; want 200 and a token", code, tok)
	}
	ag := d.dialTok(tok)
	if f := ag.until("agent.status"); f.str("status") != "online" {
		t.Fatalf("the login's token on /ws: %v, want an online agent", f)
	}
	d.waitAgents(t, agent.ID)
	// Four failures, as if they had come (a bcrypt compare under -race
	// takes seconds; the success cleared the first), and the fifth: the
	// limit is reached.
	rc := d.srv.App.Redis
	failKey := d.srv.App.Cfg.Chat.KeyPrefix + "fail:e:" + email
	if err := rc.Do(ctx, rc.B().Set().Key(failKey).Value("4").Ex(10*time.Minute).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := d.login(email, "not it either"); code != 401 {
		t.Fatalf("fifth wrong password = %d, want 401", code)
	}
	code, retry, tok := d.login(email, password)
	if s, _ := strconv.Atoi(retry); code != 429 || tok != "" || s < 1 || s > 900 {
		t.Fatalf("right password after 5 failures = %d, Retry-After %q, token %q; want 429, 1–900 s, none", code, retry, tok)
	}
}
