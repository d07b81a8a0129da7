package models

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
)

// DefaultMaxConns is the pool size when Open is given zero. MariaDB allows
// 151 connections by default: three instances at 32 leave room for tools.
const DefaultMaxConns = 32

// Open connects to the DSN's database, creating the database first when it
// does not exist, and returns a bun DB whose pool holds at most maxConns
// connections (zero means DefaultMaxConns).
func Open(ctx context.Context, dsn string, maxConns int) (*bun.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse mysql dsn: %w", err)
	}
	return open(ctx, cfg, maxConns, true)
}

// open makes the pool for cfg; with connect it first creates the database
// if missing and pings it, else it touches no server.
func open(ctx context.Context, cfg *mysql.Config, maxConns int, connect bool) (*bun.DB, error) {
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.InterpolateParams = true // one round trip per statement
	cfg.MultiStatements = true   // batched shard inserts (see Repo.InsertMessages)
	if err := cfg.Apply(mysql.Charset("utf8mb4", "utf8mb4_unicode_ci")); err != nil {
		return nil, fmt.Errorf("mysql charset: %w", err)
	}
	if connect && cfg.DBName != "" {
		if err := createDatabase(ctx, *cfg); err != nil {
			return nil, err
		}
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connector: %w", err)
	}
	sqldb := sql.OpenDB(conn)
	sqldb.SetMaxOpenConns(maxConns)
	sqldb.SetMaxIdleConns(maxConns)
	sqldb.SetConnMaxLifetime(30 * time.Minute)
	db := bun.NewDB(sqldb, mysqldialect.New())
	if !connect {
		return db, nil
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ping mysql %s: %w", cfg.Addr, err)
	}
	return db, nil
}

func createDatabase(ctx context.Context, cfg mysql.Config) error {
	name := cfg.DBName
	cfg.DBName = ""
	conn, err := mysql.NewConnector(&cfg)
	if err != nil {
		return fmt.Errorf("mysql connector: %w", err)
	}
	sqldb := sql.OpenDB(conn)
	defer sqldb.Close()
	if _, err := sqldb.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		return fmt.Errorf("create database %s on %s: %w", name, cfg.Addr, err)
	}
	return nil
}
