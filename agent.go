package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/chat"
	"github.com/pushdesk/pushdesk/models"
	"github.com/pushdesk/pushdesk/models/migrations"
)

const agentUsage = "usage: pushdesk agent add --email E --name N | agent list | agent disable --email E"

// agentCmd manages console logins: add, list, disable.
func agentCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(agentUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("agent "+sub, flag.ContinueOnError)
	email := fs.String("email", "", "the agent's login email")
	name := fs.String("name", "", "the agent's display name")
	if err := fs.Parse(args); err != nil {
		return err
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
	if _, err := migrations.Run(ctx, db); err != nil {
		return err
	}
	repo := &models.ChatRepo{DB: db}
	switch sub {
	case "add":
		a, password, err := chat.AddAgent(ctx, repo, *email, *name)
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
		if *email == "" {
			return errors.New(agentUsage)
		}
		if err := repo.DisableAgent(ctx, *email); err != nil {
			return err
		}
		fmt.Printf("agent %s disabled\n", *email)
	default:
		return errors.New(agentUsage)
	}
	return nil
}
