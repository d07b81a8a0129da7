package models

import (
	"strings"
	"testing"

	"github.com/uptrace/bun/dialect/mysqldialect"
)

// appendSQLString must quote exactly as the dialect does.
func TestAppendSQLStringMatchesTheDialect(t *testing.T) {
	d := mysqldialect.New()
	for _, s := range []string{
		"", "plain", "it's", `back\slash`, `\'`, "''\\\\", "nul\x00byte", "\x00", "多字节 🎉 ü",
		`{"q":"a\"b","p":"C:\\dir"}`, "tail'", "'head", "bad\xffutf8'\\", strings.Repeat(`x'\`, 1000),
	} {
		want := string(d.AppendString(nil, s))
		if got := string(appendSQLString(nil, d, s)); got != want {
			t.Errorf("appendSQLString(%q) = %q, want %q", s, got, want)
		}
	}
}
