package models

import (
	"strings"
	"testing"
)

func TestParseShardMap(t *testing.T) {
	a := "root@tcp(db-a.example:3306)/pd" // parsed only, never dialled
	b := "u:secret@tcp(db-b.example:3306)/pd"
	got, err := ParseShardMap(" 64-127=" + b + "; 0-63=" + a + ";")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (ShardRange{0, 63, a}) || got[1] != (ShardRange{64, 127, b}) {
		t.Fatalf("got %+v", got)
	}
	if got, err := ParseShardMap(""); err != nil || got != nil {
		t.Fatalf("empty map: %v %v", got, err)
	}
	if got, err := ParseShardMap("0-126=" + a + ";127=" + b); err != nil || got[1].From != 127 || got[1].To != 127 {
		t.Fatalf("a one-shard range: %+v %v", got, err)
	}
	for in, want := range map[string]string{
		"0-63=" + a:                             "shards 64-127 are in no range",
		"0-63=" + a + ";65-127=" + b:            "shards 64-64 are in no range",
		"0-64=" + a + ";64-127=" + b:            "overlap",
		"0-63=" + a + ";0-63=" + a:              "overlap",
		"0-63=" + a + ";64-128=" + b:            "want 0 <= FROM <= TO <= 127",
		"63-0=" + a:                             "want 0 <= FROM <= TO <= 127",
		"x-63=" + a:                             "is not a shard range",
		"0-63" + a:                              "want FROM-TO=DSN",
		"0-63=" + a + ";64-127=not a dsn":       "shards 64-127: the DSN does not parse",
		"0-63=" + a + ";64-127=u:p@tcp(h:1)/":   "names no database",
		";;":                                    "no ranges",
		"0-63=" + a + ";64-127=u:hunter2@tcp(h": "shards 64-127",
	} {
		_, err := ParseShardMap(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), ShardMapVar+": ") {
			t.Errorf("ParseShardMap(%q) = %v, want an error with %q", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2")) {
			t.Errorf("error quotes a password: %v", err)
		}
	}
}
