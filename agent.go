package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
)

type agentOpts struct{ email, name *string }

const agentUsage = "agent add --email E --name N\nagent list\nagent disable --email E"

var agentCommand = &command{
	name:    "agent",
	usage:   agentUsage,
	summary: "add, list or disable the support agents' console logins",
	about: `Manages the logins of the agent console (/console/). "add" creates one and
prints its generated password once (only a bcrypt hash is stored); "list" shows
them all; "disable" turns one off, so it can no longer log in.
Migrates the schema first when it has to.`,
	flags: func(fs *flag.FlagSet) any {
		return &agentOpts{
			email: fs.String("email", "", "the agent's login email (add, disable)"),
			name:  fs.String("name", "", "the agent's display name (add)"),
		}
	},
	run: agentCmd,
}

// agentCmd manages console logins: add, list, disable.
func agentCmd(ctx context.Context, _ *slog.Logger, o any, args []string) error {
	opts := o.(*agentOpts)
	if len(args) != 1 {
		return usage(find("agent"))
	}
	sub := args[0]
	switch {
	case sub != "add" && sub != "list" && sub != "disable":
		return usage(find("agent"))
	case sub == "disable" && *opts.email == "":
		return usage(find("agent"))
	}
	cfg, err := app.ConfigFromEnv()
	if err != nil {
		return err
	}
	db, err := models.Open(ctx, cfg.MySQLDSN, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	run := migrations.Run
	if cfg.MySQLShards != "" { // the shards are not this command's business, and not on this server
		run = migrations.RunWithoutShards
	}
	if _, err := run(ctx, db); err != nil {
		return err
	}
	repo := &models.ChatRepo{DB: db}
	switch sub {
	case "add":
		a, password, err := chat.AddAgent(ctx, repo, *opts.email, *opts.name)
		if err != nil {
			return err
		}
		fmt.Printf("agent %d added: %s <%s>\npassword (shown once, store it now): %s\n", a.ID, a.Name, a.Email, password)
	case "list":
		as, err := repo.Agents(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tEMAIL\tNAME\tSTATE\tCREATED")
		for _, a := range as {
			state := "active"
			if a.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", a.ID, a.Email, a.Name, state, a.CreatedAt.Format("2006-01-02 15:04"))
		}
		return w.Flush()
	case "disable":
		if err := repo.DisableAgent(ctx, *opts.email); err != nil {
			return err
		}
		fmt.Printf("agent %s disabled\n", *opts.email)
	}
	return nil
}
