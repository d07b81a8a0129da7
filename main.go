// Command pushdesk is the Pushdesk real-time message service.
//
//	pushdesk [serve]     run HTTP, WebSocket, SSE and the workers (migrates first)
//	pushdesk worker      run the queue workers, scheduler and background loops only
//	pushdesk migrate     create or update the MySQL schema and exit
//	pushdesk token UID   print a user token signed with PUSHDESK_JWT_SECRET
//	pushdesk agent add|list|disable   manage console logins
//	pushdesk help [COMMAND]           what a command does, its flags and variables
//
// Every setting comes from PUSHDESK_* variables (app.Vars lists them).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/pushdesk/pushdesk/app"
)

// command is one pushdesk command: its help text and what runs it.
type command struct {
	name    string
	usage   string // after "pushdesk "; several forms one a line
	summary string // one line, for the command list
	about   string // what it does, for `pushdesk help NAME`
	// flags declares the command's flags on fs (nil: it has none).
	flags func(fs *flag.FlagSet) any
	// noArgs: the command takes no positional arguments (a stray one is
	// a usage error, not ignored).
	noArgs bool
	run    func(ctx context.Context, log *slog.Logger, opts any, args []string) error
}

// commands is filled in init, since help refers to it.
var commands []*command

func init() {
	commands = []*command{serveCmd, workerCmd, migrateCmd, tokenCmd, agentCommand, helpCmd}
}

var helpCmd = &command{
	name:    "help",
	usage:   "help [COMMAND]",
	summary: "this list, or what one command does, its flags and variables",
	about:   "Prints the command list, or the help of COMMAND (the same as `pushdesk COMMAND -h`).",
	run: func(_ context.Context, _ *slog.Logger, _ any, args []string) error {
		switch {
		case len(args) == 0:
			printOverview(os.Stdout)
			return nil
		case len(args) > 1:
			return usage(find("help"))
		case isHelpFlag(args[0]):
			printHelp(os.Stdout, find("help"))
			return nil
		}
		c := find(args[0])
		if c == nil {
			return usageError(fmt.Sprintf("pushdesk: unknown command %q (pushdesk help lists them)", args[0]))
		}
		printHelp(os.Stdout, c)
		return nil
	},
}

func main() {
	// Secrets (keys, passwords in URLs and DSNs) never reach a log line.
	log := slog.New(app.Redacting(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	slog.SetDefault(log)
	if err := run(context.Background(), log, os.Args[1:]); err != nil {
		var u usageError
		if errors.As(err, &u) {
			if u != "" {
				fmt.Fprintln(os.Stderr, u)
			}
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "pushdesk:", app.Redact(err.Error()))
		os.Exit(1)
	}
}

// usageError is a command line that could not be parsed: what to print
// (nothing when the parser printed it already); the exit code is 2.
type usageError string

func (u usageError) Error() string { return string(u) }

// usage is the usageError for command c.
func usage(c *command) error {
	return usageError(fmt.Sprintf("usage: %s\n(pushdesk help %s tells more)", forms(c, "       "), c.name))
}

// run parses args (without the program name) and runs the command.
func run(ctx context.Context, log *slog.Logger, args []string) error {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	} else if len(args) > 0 && isHelpFlag(args[0]) {
		printOverview(os.Stdout)
		return nil
	}
	c := find(name)
	if c == nil {
		fmt.Fprintf(os.Stderr, "pushdesk: unknown command %q\n\n", name)
		printOverview(os.Stderr)
		return usageError("")
	}
	if c == helpCmd {
		return c.run(ctx, log, nil, args)
	}
	fs := flag.NewFlagSet("pushdesk "+c.name, flag.ContinueOnError)
	fs.Usage = func() {} // -h prints the help below, on stdout
	var opts any
	if c.flags != nil {
		opts = c.flags(fs)
	}
	// Flags may stand before and after the positional arguments
	// ("token 42 -role agent", "agent add --email E").
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printHelp(os.Stdout, c)
				return nil
			}
			return usage(c)
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if c.noArgs && len(pos) > 0 {
		return usage(c)
	}
	return c.run(ctx, log, opts, pos)
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func printOverview(w io.Writer) {
	fmt.Fprint(w, `Pushdesk: real-time notification push and support chat, one binary.

Usage: pushdesk COMMAND [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Without a command, pushdesk runs serve. Settings come from PUSHDESK_*
variables only; "pushdesk help COMMAND" (or "pushdesk COMMAND -h") says
what a command does, its flags and the variables it reads.
`)
}

func printHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", forms(c, "       "), wrap(c.about, 76))
	if c.flags != nil {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		fs.SetOutput(w)
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
	if vs := app.VarsOf(c.name); len(vs) > 0 {
		// As flag.PrintDefaults lays out the flags above: the name and its
		// default on a line, the meaning indented below it.
		fmt.Fprintln(w, "\nVariables it reads:")
		for _, v := range vs {
			def := ""
			switch v.Default {
			case "":
			case "required":
				def = "  (required)"
			default:
				def = "  (default " + v.Default + ")"
			}
			fmt.Fprintf(w, "  %s%s\n%s\n", v.Name, def, indent(wrap(v.Meaning, 70), "      "))
		}
	}
}

// forms is c's usage, each form after "pushdesk ", the ones after the
// first indented by pad.
func forms(c *command, pad string) string {
	return "pushdesk " + strings.ReplaceAll(c.usage, "\n", "\n"+pad+"pushdesk ")
}

// indent puts prefix before every line of text.
func indent(text, prefix string) string {
	return prefix + strings.ReplaceAll(text, "\n", "\n"+prefix)
}

// wrap breaks text into lines of at most width runes at spaces, keeping
// blank lines between paragraphs.
func wrap(text string, width int) string {
	var b strings.Builder
	for i, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			b.WriteString("\n\n")
		}
		n := 0
		for j, word := range strings.Fields(para) {
			if j > 0 && n+1+len(word) > width {
				b.WriteString("\n")
				n = 0
			} else if j > 0 {
				b.WriteString(" ")
				n++
			}
			b.WriteString(word)
			n += len(word)
		}
	}
	return b.String()
}
