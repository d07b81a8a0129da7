package app

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"
	"github.com/pushdesk/pushdesk/models"
)

// Redacted stands in for a secret in logs and errors.
const Redacted = "[redacted]"

// minSecretLen is the shortest value replaced wherever it appears: a
// shorter one would mangle every line it happens to occur in. Passwords in
// URLs and DSNs are redacted by their place whatever their length.
const minSecretLen = 4

// secrets is the process's set of values that must not reach a log line
// or an error text: the configuration's keys and passwords (see
// Config.secrets). It only grows.
var secrets struct {
	mu   sync.Mutex
	vals []string
	rep  atomic.Pointer[strings.Replacer]
}

// RegisterSecrets adds values to those Redact replaces. Safe for
// concurrent use.
func RegisterSecrets(vals ...string) {
	secrets.mu.Lock()
	defer secrets.mu.Unlock()
	changed := false
	for _, v := range vals {
		if len(v) >= minSecretLen && !slices.Contains(secrets.vals, v) {
			secrets.vals = append(secrets.vals, v)
			changed = true
		}
	}
	if !changed {
		return
	}
	// Longest first: a secret that contains another goes whole.
	slices.SortFunc(secrets.vals, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(secrets.vals))
	for _, v := range secrets.vals {
		pairs = append(pairs, v, Redacted)
	}
	secrets.rep.Store(strings.NewReplacer(pairs...))
}

var (
	// urlPassword is the password of a URL's userinfo (redis://user:pw@host).
	urlPassword = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s"']*):[^\s"']*@`)
	// dsnPassword is the password of a go-sql-driver DSN (user:pw@tcp(host)/db).
	dsnPassword = regexp.MustCompile(`([^\s:@/"'(=]*):[^\s"']*@(tcp|tcp4|tcp6|unix)?\(`)
)

// Redact returns s with every registered secret and every password in a
// URL or DSN replaced by Redacted.
func Redact(s string) string {
	if r := secrets.rep.Load(); r != nil {
		s = r.Replace(s)
	}
	if strings.IndexByte(s, '@') >= 0 {
		s = urlPassword.ReplaceAllString(s, "$1:"+Redacted+"@")
		s = dsnPassword.ReplaceAllString(s, "$1:"+Redacted+"@$2(")
	}
	return s
}

// RedactedError is an error whose text went through Redact; errors.Is and
// errors.As still see the error it wraps.
type RedactedError struct{ Err error }

func (e *RedactedError) Error() string { return Redact(e.Err.Error()) }
func (e *RedactedError) Unwrap() error { return e.Err }

// RedactError wraps err so that its text carries no secret (nil stays nil).
func RedactError(err error) error {
	if err == nil {
		return nil
	}
	return &RedactedError{err}
}

// secrets lists the configuration's values to keep out of logs.
func (c Config) secrets() []string {
	out := []string{c.JWTSecret, c.IngestKey, c.AdminPassword, c.MetricsToken}
	out = append(out, urlPasswordOf(c.RedisURL))
	if d, err := mysql.ParseDSN(c.MySQLDSN); err == nil {
		out = append(out, d.Passwd)
	}
	if ranges, err := models.ParseShardMap(c.MySQLShards); err == nil {
		out = append(out, models.Passwords(ranges)...)
	}
	return out
}

// urlPasswordOf finds the password in u's userinfo by position, so that
// it is found in a URL that does not parse too (url.Error quotes the URL
// whole).
func urlPasswordOf(u string) string {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		return ""
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// RedactURL is u with its password, if any, redacted.
func RedactURL(u string) string { return urlPassword.ReplaceAllString(u, "$1:"+Redacted+"@") }

// Redacting wraps h so that every record's message and attributes go
// through Redact: a secret a log line would carry (an error text that
// quotes a URL, a value logged by mistake) never reaches the output.
func Redacting(h slog.Handler) slog.Handler {
	if _, ok := h.(redactingHandler); ok {
		return h
	}
	return redactingHandler{h}
}

type redactingHandler struct{ h slog.Handler }

func (r redactingHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(a)
	}
	return redactingHandler{r.h.WithAttrs(red)}
}

func (r redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{r.h.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Redact(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			s = fmt.Sprintf("%+v", x)
		}
		if red := Redact(s); red != s {
			return slog.String(a.Key, red)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
