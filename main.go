// Command pushdesk is the Pushdesk real-time message service.
//
//	pushdesk [serve]     run HTTP, WebSocket, SSE and the workers (migrates first)
//	pushdesk migrate     create or update the MySQL schema and exit
//	pushdesk token UID   print a user token signed with PUSHDESK_JWT_SECRET
//	                     (-role agent, -name, -groups a,b, -ttl 24h)
//	pushdesk agent add --email E --name N   create a console login (prints its password once)
//	pushdesk agent list                      list console logins
//	pushdesk agent disable --email E         turn a console login off
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only when PUSHDESK_PPROF_ADDR is set
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/handlers"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
)

func main() {
	// Secrets (keys, passwords in URLs and DSNs) never reach a log line.
	log := slog.New(app.Redacting(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	slog.SetDefault(log)
	cmd, args := "serve", os.Args[1:]
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(log)
	case "migrate":
		err = migrate(context.Background(), log)
	case "token":
		err = token(args)
	case "agent":
		err = agentCmd(context.Background(), args)
	default:
		err = fmt.Errorf("unknown command %q (want serve, migrate, token or agent)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushdesk:", app.Redact(err.Error()))
		os.Exit(1)
	}
}

func migrate(ctx context.Context, log *slog.Logger) error {
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	db, err := models.Open(ctx, cfg.MySQLDSN, 4)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := migrations.Run(ctx, db)
	if err != nil {
		return err
	}
	log.Info("schema up to date", "applied", applied)
	return nil
}

func serve(log *slog.Logger) error {
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := migrate(ctx, log); err != nil {
		return err
	}
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	srv, err := handlers.NewServer(a)
	if err != nil {
		a.Close()
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	if addr := os.Getenv("PUSHDESK_PPROF_ADDR"); addr != "" {
		// Profiling for operators, on its own (private) listener.
		go func() { log.Warn("pprof stopped", "err", http.ListenAndServe(addr, nil)) }()
	}
	log.Info("pushdesk listening", "addr", srv.Addr(), "internal", srv.InternalAddr(), "instance", a.Instance)
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	log.Info("stopped")
	return nil
}

func token(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	role := fs.String("role", "user", "user or agent")
	name := fs.String("name", "", "display name")
	groups := fs.String("groups", "", "comma-separated segments")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	uidArg := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		uidArg, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if uidArg == "" && fs.NArg() > 0 {
		uidArg = fs.Arg(0)
	}
	uid, err := strconv.ParseUint(uidArg, 10, 63)
	if err != nil || uid == 0 {
		return fmt.Errorf("usage: pushdesk token UID [-role agent] [-name N] [-groups a,b] [-ttl 24h]")
	}
	secret := os.Getenv("PUSHDESK_JWT_SECRET")
	if secret == "" {
		return fmt.Errorf("PUSHDESK_JWT_SECRET is required")
	}
	id := app.Identity{UID: uid, Role: app.Role(*role), Name: *name}
	if *groups != "" {
		id.Groups = strings.Split(*groups, ",")
	}
	tok, err := app.NewAuth(secret).Mint(id, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
