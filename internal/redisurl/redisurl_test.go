package redisurl

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, url string
		want      Cluster
		err       string
	}{
		{name: "seeds with ports", url: "redis+cluster://10.0.0.1:7000,10.0.0.2:7001/",
			want: Cluster{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001"}}},
		{name: "default port, no slash", url: "redis+cluster://a,b",
			want: Cluster{Addrs: []string{"a:6379", "b:6379"}}},
		{name: "credentials and TLS", url: "rediss+cluster://pd:s%40cret@a:1/0",
			want: Cluster{Addrs: []string{"a:1"}, Username: "pd", Password: "s@cret", TLS: true}},
		{name: "no node", url: "redis+cluster:///", err: "no node"},
		{name: "a database", url: "redis+cluster://a:1/3", err: "only database 0"},
		{name: "not a cluster", url: "redis://a:1/0", err: "not a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.url)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse(%q) error = %v, want %q", tt.url, err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got.Addrs, tt.want.Addrs) || got.Username != tt.want.Username ||
				got.Password != tt.want.Password || got.TLS != tt.want.TLS {
				t.Fatalf("Parse(%q) = %+v, %v, want %+v", tt.url, got, err, tt.want)
			}
			if !IsCluster(tt.url) {
				t.Fatalf("IsCluster(%q) = false", tt.url)
			}
		})
	}
	if IsCluster("redis://a:1/0") {
		t.Fatal("IsCluster(redis://…) = true")
	}
}
