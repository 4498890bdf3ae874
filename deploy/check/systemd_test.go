package check

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

var systemdDir = filepath.Join(deployDir, "systemd")

// directives is every directive the units may use, by section: one not listed (a typo, or
// a directive put in the wrong section) fails, as systemd would only warn and ignore it.
var directives = map[string][]string{
	"Unit": {"Description", "Documentation", "Wants", "Requires", "After", "Before"},
	"Service": {"Type", "User", "Group", "EnvironmentFile", "Environment", "ExecStart", "StateDirectory",
		"StateDirectoryMode", "Restart", "RestartSec", "TimeoutStopSec", "KillMode", "NoNewPrivileges",
		"ProtectSystem", "ProtectHome", "PrivateTmp", "ReadWritePaths", "LimitNOFILE"},
	"Install": {"WantedBy"},
}

func units(t *testing.T) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(systemdDir, "*.service"))
	if err != nil || len(names) == 0 {
		t.Fatalf("want units in %s, got %v (%v)", systemdDir, names, err)
	}
	return names
}

func parseUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sections, err := unit.DeserializeSections(f)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	out := map[string]map[string][]string{}
	for _, s := range sections {
		if _, dup := out[s.Section]; dup {
			t.Errorf("%s: section [%s] twice", filepath.Base(path), s.Section)
		}
		out[s.Section] = map[string][]string{}
		for _, e := range s.Entries {
			if !slices.Contains(directives[s.Section], e.Name) {
				t.Errorf("%s: [%s] %s is not a directive these units use (allowed: %v)", filepath.Base(path), s.Section, e.Name, directives[s.Section])
			}
			out[s.Section][e.Name] = append(out[s.Section][e.Name], e.Value)
		}
	}
	return out
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// modelplaneBinary builds cmd/modelplane from the main module, once per test run.
func modelplaneBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "modelplane-check-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "modelplane")
		binErr = goBuild(repoRoot, "./cmd/modelplane", binPath)
	})
	if binErr != nil {
		t.Fatalf("building modelplane: %v", binErr)
	}
	return binPath
}

// goBuild builds pkg from the module in dir into out; a failure carries the compiler's output.
func goBuild(dir, pkg, out string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

var flagPattern = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)`)

// flagsOf answers the flags `modelplane <command> --help` lists.
func flagsOf(t *testing.T, bin, command string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, command, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("modelplane %s --help: %v\n%s", command, err, out)
	}
	flags := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if m := flagPattern.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = true
		}
	}
	if !flags["help"] {
		t.Fatalf("modelplane %s --help: found no flags in\n%s", command, out)
	}
	return flags
}

func TestSystemd_UnitsParseAndTheirFlagsExist(t *testing.T) {
	bin := modelplaneBinary(t)
	envExample := readEnvFile(t, filepath.Join(systemdDir, "modelplane.env.example"))
	documented := documentedEnv(t)
	for k := range envExample {
		if ownEnv(k) && !documented[k] && !strings.HasPrefix(k, "MODELPLANE_API_LISTEN") {
			t.Errorf("modelplane.env.example sets %s, which README.md does not name", k)
		}
	}
	commands := map[string]bool{}
	for _, path := range units(t) {
		name := filepath.Base(path)
		u := parseUnit(t, path)
		for _, section := range []string{"Unit", "Service", "Install"} {
			if _, ok := u[section]; !ok {
				t.Errorf("%s: want a [%s] section", name, section)
			}
		}
		starts := u["Service"]["ExecStart"]
		if len(starts) != 1 {
			t.Fatalf("%s: want one ExecStart, got %d", name, len(starts))
		}
		args := strings.Fields(starts[0])
		if len(args) < 2 || args[0] != "/usr/local/bin/modelplane" {
			t.Fatalf("%s ExecStart: want /usr/local/bin/modelplane COMMAND ..., got %q", name, starts[0])
		}
		command := args[1]
		if want := "modelplane-" + command + ".service"; name != want {
			t.Errorf("%s: runs modelplane %s, so want it named %s", name, command, want)
		}
		commands[command] = true
		flags := flagsOf(t, bin, command)
		for _, a := range args[2:] {
			if a == `\` {
				continue
			}
			if strings.HasPrefix(a, "--") {
				f, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !flags[f] {
					t.Errorf("%s: modelplane %s has no flag --%s", name, command, f)
				}
			}
			for _, m := range regexp.MustCompile(`\$\{(\w+)\}`).FindAllStringSubmatch(a, -1) {
				if _, ok := envExample[m[1]]; !ok {
					t.Errorf("%s: ExecStart uses ${%s}, which modelplane.env.example does not set", name, m[1])
				}
			}
		}
		if files := u["Service"]["EnvironmentFile"]; !slices.Equal(files, []string{"/etc/modelplane/modelplane.env"}) {
			t.Errorf("%s EnvironmentFile: want /etc/modelplane/modelplane.env, got %v", name, files)
		}
		user := u["Service"]["User"]
		if command == "agent" {
			if len(user) != 0 {
				t.Errorf("%s: want the agent to run as root (replica users), got User=%v", name, user)
			}
			if got := u["Service"]["KillMode"]; !slices.Equal(got, []string{"process"}) {
				t.Errorf("%s: want KillMode=process so that model servers outlive an agent restart, got %v", name, got)
			}
			if !slices.Contains(args, "--require-isolation") {
				t.Errorf("%s: want --require-isolation", name)
			}
		} else if !slices.Equal(user, []string{"modelplane"}) {
			t.Errorf("%s: want User=modelplane, got %v", name, user)
		}
	}
	for _, c := range []string{"api", "gateway", "worker", "agent"} {
		if !commands[c] {
			t.Errorf("want a unit that runs modelplane %s", c)
		}
	}
}

// readEnvFile reads KEY=VALUE lines as systemd's EnvironmentFile= does (comments and blank
// lines skipped).
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`).MatchString(k) {
			t.Errorf("%s:%d: want KEY=VALUE, got %q", filepath.Base(path), i+1, l)
			continue
		}
		out[k] = v
	}
	return out
}
