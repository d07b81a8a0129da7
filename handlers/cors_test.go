package handlers

import (
	"net/http"
	"testing"

	"github.com/pushdesk/pushdesk/app"
)

// Pages of the main site, on another origin, call the user API (with a
// preflight, for the Authorization header) and open /sse.
func TestBrowsersOnOtherOriginsMayCall(t *testing.T) {
	s := startServer(t, func(c *app.Config) { c.CORSOrigins = "https://site.example" })
	base := "http://" + s.Addr()
	pre, _ := http.NewRequest(http.MethodOptions, base+"/api/v1/me/read", nil)
	pre.Header.Set("Origin", "https://site.example")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	res, err := http.DefaultClient.Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "https://site.example" {
		t.Fatalf("preflight = %d, allow-origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	for origin, want := range map[string]string{"https://site.example": "https://site.example", "https://elsewhere.example": ""} {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/me/unread", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Authorization", "Bearer "+mint(t, newUID()))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != want {
			t.Errorf("GET from %s = %d, allow-origin %q, want %q", origin, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"), want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/sse?token="+mint(t, newUID()), nil)
	req.Header.Set("Origin", "https://site.example")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "https://site.example" {
		t.Fatalf("sse = %d, allow-origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	// A bad token still gets 401, with the header so the page can read it.
	req, _ = http.NewRequest(http.MethodGet, base+"/api/v1/me/unread", nil)
	req.Header.Set("Origin", "https://site.example")
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || res.Header.Get("Access-Control-Allow-Origin") != "https://site.example" {
		t.Fatalf("no token = %d, allow-origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
}
