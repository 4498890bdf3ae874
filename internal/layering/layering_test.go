package layering

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/modelplane/modelplane"

// rule says that pkg must not reach, directly or through other packages, any package in
// forbidden: an import path, or a path ending in "/..." for it and everything below it.
type rule struct {
	pkg       string
	forbidden []string
	why       string
}

var (
	database = []string{"github.com/lib/pq/...", "github.com/jmoiron/sqlx/...", "database/sql"}
	echo     = "github.com/labstack/echo/..."
	temporal = "go.temporal.io/..."
	store    = module + "/store"
	server   = module + "/api"
)

var rules = []rule{
	{module, []string{module + "/..."}, "the vocabulary is imported by every package and imports none of them"},
	{module + "/workflows", append([]string{store, module + "/activities", module + "/agent", echo}, database...),
		"workflow code is replayed deterministically; it knows activities by name through package contract"},
	{module + "/workflows/contract", append([]string{store, module + "/activities", module + "/workflows"}, database...),
		"the contract is what the API, gateway and autoscaler may know of the workflows"},
	{module + "/agent", append([]string{store, server, module + "/activities"}, database...),
		"the agent runs on GPU hosts and speaks to the control plane over HTTP only"},
	{module + "/agent/agentproto", append([]string{store, server, module + "/agent"}, database...),
		"the agent protocol is shared by the agent and the control plane without linking either"},
	{module + "/client", append([]string{server, store, module + "/agent", echo, temporal}, database...),
		"the Go client links the wire types, not the server"},
	{module + "/watch", append([]string{server, store, module + "/agent", echo, temporal}, database...),
		"watch is a client of the API"},
	{module + "/apiv1", append([]string{server, store, echo, temporal}, database...),
		"the wire types are imported by clients"},
	{module + "/gateway", []string{module + "/activities", module + "/workflows", module + "/agent"},
		"the gateway starts and signals workflows through package contract"},
	{module + "/autoscaler", []string{module + "/activities", module + "/workflows", module + "/agent"},
		"the autoscaler sends updates through package contract"},
	{module + "/api", []string{module + "/activities", module + "/workflows", module + "/agent"},
		"the API starts workflows by their contract and reads nodes through the agent protocol"},
	{module + "/reconcile", []string{module + "/activities", module + "/workflows", module + "/agent"},
		"the reconcile pass starts workflows by their contract, as the API does"},
	{module + "/dashboard", []string{server, module + "/gateway", module + "/activities", module + "/workflows", temporal},
		"the dashboard reads and changes everything through the API's /v1 routes, from the browser"},
	{module + "/session", []string{server, echo, temporal},
		"sessions are checked by the API's auth and made by the dashboard, both of which import them"},
}

// deps answers, for each package, every package it depends on (go list -deps).
func deps(t *testing.T, pkgs []string) map[string][]string {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	args := append([]string{"list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`}, pkgs...)
	cmd := exec.Command(gobin, args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	all := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			all[f[0]] = f[1:]
		}
	}
	return all
}

// reaches reports whether path is forbidden, or lies below a forbidden "path/...".
func reaches(path, forbidden string) bool {
	if tree, ok := strings.CutSuffix(forbidden, "/..."); ok {
		return path == tree || strings.HasPrefix(path, tree+"/")
	}
	return path == forbidden
}

func TestLayering_NoPackageReachesWhatItMustNot(t *testing.T) {
	var pkgs []string
	for _, r := range rules {
		pkgs = append(pkgs, r.pkg)
	}
	all := deps(t, pkgs)
	for _, r := range rules {
		got, ok := all[r.pkg]
		if !ok {
			t.Errorf("go list did not report %s", r.pkg)
			continue
		}
		for _, f := range r.forbidden {
			var hits []string
			for _, d := range got {
				if reaches(d, f) {
					hits = append(hits, d)
				}
			}
			if len(hits) > 0 {
				t.Errorf("%s reaches %s (%s): %s", r.pkg, f, strings.Join(hits, ", "), r.why)
			}
		}
	}
}
