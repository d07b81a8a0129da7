package app

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var varName = regexp.MustCompile(`PUSHDESK_[A-Z0-9_]+`)

// Vars, what config.go reads and the README's variable table list the
// same variables, so `pushdesk help` and the README tell the truth.
func TestVarsMatchConfigAndReadme(t *testing.T) {
	listed := map[string]bool{}
	for _, v := range Vars {
		if listed[v.Name] {
			t.Errorf("%s listed twice in Vars", v.Name)
		}
		listed[v.Name] = true
	}
	src, err := os.ReadFile("config.go")
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(PUSHDESK_[A-Z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
		read[m[1]] = true
		if !listed[m[1]] {
			t.Errorf("config.go reads %s, which Vars does not list", m[1])
		}
	}
	for name := range listed {
		if !read[name] && name != "PUSHDESK_DATA_DIR" { // the task scripts' own
			t.Errorf("Vars lists %s, which config.go does not read", name)
		}
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inTable := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `PUSHDESK_") {
			continue
		}
		first := strings.Split(line, "|")[1] // the variable column
		for _, n := range varName.FindAllString(first, -1) {
			inTable[n] = true
		}
	}
	for name := range listed {
		if !inTable[name] {
			t.Errorf("the README's table lacks %s", name)
		}
	}
	for name := range inTable {
		if !listed[name] {
			t.Errorf("the README's table has %s, which Vars does not list", name)
		}
	}
}

func TestVarsOfWorkerHasNoPublicListener(t *testing.T) {
	names := func(cmd string) []string {
		var out []string
		for _, v := range VarsOf(cmd) {
			out = append(out, v.Name)
		}
		return out
	}
	w := names("worker")
	if slices.Contains(w, "PUSHDESK_ADDR") || !slices.Contains(w, "PUSHDESK_HEALTH_ADDR") {
		t.Errorf("VarsOf(worker) = %v, want PUSHDESK_HEALTH_ADDR and no PUSHDESK_ADDR", w)
	}
	if got := names("token"); !slices.Equal(got, []string{"PUSHDESK_JWT_SECRET"}) {
		t.Errorf("VarsOf(token) = %v, want [PUSHDESK_JWT_SECRET]", got)
	}
}
