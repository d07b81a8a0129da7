// Package web holds the browser-facing static files (a demo client and,
// later, the agent console), embedded in the binary.
package web
