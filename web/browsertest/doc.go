// Package browsertest drives the agent console (/console/) and the user
// demo page (/demo/) in real headless Chromium against a real pushdesk
// process, with a redis-server and a MySQL database of its own.
//
// It needs Chromium (Debian's chromium package, or PUSHDESK_CHROMIUM).
// Without it the tests skip, unless PUSHDESK_BROWSER_TESTS=required (as
// .ci/run sets), which makes a missing browser a failure. Screenshots go
// to web/browsertest/screenshots/.
package browsertest
