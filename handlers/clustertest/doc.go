// Package clustertest holds the multi-process tests: several real
// pushdesk processes, a Redis server of the test's own (so it can be
// restarted) and the shared MariaDB, driven as a deployment would be —
// kill -9, SIGTERM, Redis restarts. It has no non-test code.
package clustertest
