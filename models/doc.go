// Package models owns the MySQL schema (bun models, the 128 message shards,
// migrations) and the queries on it. It imports neither Fiber nor asynq nor
// Redis: callers decide when to call it; it decides how rows are read and
// written.
package models
