package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pushdesk/pushdesk/app"
)

// Every command's help says how to call it and lists each variable it
// reads, so `pushdesk help CMD` never falls behind app.Vars.
func TestHelpOfEveryCommandListsItsVariables(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			printHelp(&b, c)
			out := b.String()
			for _, line := range strings.Split(out, "\n") {
				if len([]rune(line)) > 80 {
					t.Errorf("help of %s has a line over 80 columns: %q", c.name, line)
				}
			}
			if !strings.HasPrefix(out, "Usage: pushdesk "+c.name) {
				t.Errorf("help starts %q, want Usage: pushdesk %s", strings.SplitN(out, "\n", 2)[0], c.name)
			}
			for _, v := range app.VarsOf(c.name) {
				if !strings.Contains(out, v.Name) {
					t.Errorf("help of %s lacks %s", c.name, v.Name)
				}
			}
		})
	}
}

func TestOverviewFitsEightyColumns(t *testing.T) {
	var b bytes.Buffer
	printOverview(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("the command list has a line over 80 columns: %q", line)
		}
	}
}

func TestCommandLines(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	stdout := os.Stdout
	devnull, _ := os.Open(os.DevNull)
	os.Stdout = devnull // the help texts
	defer func() { os.Stdout = stdout; devnull.Close() }()
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
	}{
		{"help", []string{"help"}, false},
		{"help of a command", []string{"help", "worker"}, false},
		{"-h alone", []string{"-h"}, false},
		{"-h of a command", []string{"serve", "-h"}, false},
		{"-h of a subcommand", []string{"agent", "add", "-h"}, false},
		{"unknown command", []string{"bogus"}, true},
		{"unknown flag", []string{"worker", "-x"}, true},
		{"token without a uid", []string{"token"}, true},
		{"token with a bad uid", []string{"token", "x"}, true},
		{"unknown agent subcommand", []string{"agent", "frob"}, true},
		{"-h of help", []string{"help", "-h"}, false},
		{"help of an unknown command", []string{"help", "bogus"}, true},
		{"help of two commands", []string{"help", "serve", "worker"}, true},
		{"serve with a stray argument", []string{"serve", "now"}, true},
		{"migrate with a stray argument", []string{"migrate", "up"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), log, tc.args)
			var u usageError
			if got := errors.As(err, &u); got != tc.usage || (!tc.usage && err != nil) {
				t.Fatalf("run(%q) = %v, want a usage error: %v", tc.args, err, tc.usage)
			}
		})
	}
}

// No Docker engine runs here, so the image build is checked by what can
// be: the build stage's Go is go.mod's, and the context leaves out what
// `task run` leaves in the tree.
func TestDockerfileBuildsWithGoModsVersion(t *testing.T) {
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if want := "FROM golang:" + string(m[1]) + "-"; !bytes.Contains(df, []byte(want)) {
		t.Errorf("Dockerfile's build stage is not %s… (go.mod says go %s)", want, m[1])
	}
	ignore, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.ReplaceAll(string(ignore), "\r", ""), "\n")
	for _, want := range []string{".data/", "bin/", ".git/"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
