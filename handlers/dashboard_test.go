package handlers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// dashboardMetric finds the series names in a PromQL expression: ours and
// the Go client's process and runtime collectors'.
var dashboardMetric = regexp.MustCompile(`\b(?:pushdesk|process|go)_[a-z0-9_]+\b`)

// Every metric docs/grafana-dashboard.json names is on /metrics of a
// process with workers, once it has seen a message and a chat: a renamed
// metric breaks this test, not the dashboard in production.
func TestDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	// Every "expr" anywhere: the panels of a collapsed row nest inside it.
	named := map[string]string{} // metric → a panel that uses it
	var walk func(v any, title string)
	walk = func(v any, title string) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["title"].(string); ok {
				title = s
			}
			if expr, ok := v["expr"].(string); ok {
				for _, m := range dashboardMetric.FindAllString(expr, -1) {
					named[m] = title
				}
			}
			for _, e := range v {
				walk(e, title)
			}
		case []any:
			for _, e := range v {
				walk(e, title)
			}
		}
	}
	walk(dash, "")
	if len(named) < 10 {
		t.Fatalf("the dashboard names only %d metrics: %v", len(named), named)
	}

	// A message pushed to a user, and a chat line answered by an agent.
	d := newDesk(t)
	uid := newUID()
	u := d.user(uid)
	if code, body := d.post("/internal/v1/messages", testIngestKey, fmt.Sprintf(`{"to_uid":%d,"kind":"comment","body":{"text":"hi"}}`, uid)); code != 202 {
		t.Fatalf("ingest = %d %v", code, body)
	}
	u.until("msg")
	u.chatSend("", "hello?", "d1")
	ag := d.agent(newUID(), "Dash")
	ag.until("chat.assigned")

	exported := func() map[string]bool {
		req, _ := http.NewRequest(http.MethodGet, d.base+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+testIngestKey) // the public listener's /metrics asks for a token
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		got := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			got[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
		return got
	}
	var missing []string
	deadline := time.Now().Add(10 * time.Second) // the shard write lingers, the chat metrics follow its loop
	for {
		got := exported()
		missing = missing[:0]
		for m, panel := range named {
			if !got[m] {
				missing = append(missing, fmt.Sprintf("%s (panel %q)", m, panel))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("the dashboard names %s, which /metrics does not export", m)
	}
}
