package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// apiFixture is the real API over HTTP with a workspace holding one model that has a
// development deployment, a production deployment and a staging environment in the middle
// of a promotion.
type apiFixture struct {
	url, key        string
	db              *sqlx.DB
	model           store.Model
	dev, prod, cand store.Deployment
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	ctx := context.Background()
	db, url := apitest.Serve(t, dbURL)
	m, _, key := apitest.Workspace(t, db, "cli")
	f := &apiFixture{url: url, key: key, db: db}
	var err error
	f.dev, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, IsDevelopment: true})
	require.NoError(t, err)
	f.prod, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, f.prod.ID))
	f.cand, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	_, err = store.CreateEnvironment(ctx, db, store.Environment{ModelID: m.ID, Name: "staging",
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, "staging", f.prod.ID))
	_, err = db.Exec(`UPDATE environments SET candidate_deployment_id = $1 WHERE model_id = $2 AND name = 'staging'`, f.cand.ID, m.ID)
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO promotions (id, model_id, environment, source_deployment_id, candidate_deployment_id,
		previous_deployment_id, status, percent_traffic_to_new_version, workflow_id)
		VALUES ($1, $2, 'staging', $3, $3, $4, 'RAMPING_UP', 30, 'promotion:cli:staging')`, modelplane.NewID(8), m.ID, f.cand.ID, f.prod.ID)
	require.NoError(t, err)
	f.model, err = store.ModelByID(ctx, db, m.WorkspaceID, m.ID)
	require.NoError(t, err)
	return f
}

// raw returns the list under field in the API's own answer to GET path, to compare
// --output json with what the server sent.
func (f *apiFixture) raw(t *testing.T, path, field string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.url+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Api-Key "+f.key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body map[string]json.RawMessage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return string(body[field])
}

// cliResult is what one run of the command line did.
type cliResult struct {
	stdout, stderr string
	exit           int
}

// runClient runs the CLI in an empty directory with env as the only MODELPLANE_ settings,
// so that neither the developer's environment nor a key file in the checkout leaks in.
func runClient(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cmd := modelplaneCmd(args...)
	cmd.Dir = dir
	kept := []string{"MODELPLANE_TEST_MAIN=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MODELPLANE_") {
			kept = append(kept, kv)
		}
	}
	cmd.Env = append(kept, env...)
	return runCmd(t, cmd)
}

// runCmd runs cmd to its end and returns what it printed and its exit code.
func runCmd(t *testing.T, cmd *exec.Cmd) cliResult {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.exit = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return r
}

// run runs a client command against the fixture with --url and --api-key and requires it
// to succeed.
func (f *apiFixture) run(t *testing.T, args ...string) string {
	t.Helper()
	r := runClient(t, "", nil, append(args, "--url", f.url, "--api-key", f.key)...)
	require.Zero(t, r.exit, "modelplane %s failed; stderr:\n%s", strings.Join(args, " "), r.stderr)
	return r.stdout
}

// table splits a tabwriter table into rows of cells.
func table(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestModelsCmd_TableShowsDeploymentCountsAndRoles(t *testing.T) {
	f := newAPIFixture(t)
	rows := table(f.run(t, "models"))
	require.Equal(t, [][]string{
		{"ID", "NAME", "DEPLOYMENTS", "PRODUCTION", "DEVELOPMENT"},
		{f.model.ID, "echo", "3", f.prod.ID, f.dev.ID},
	}, rows)
}

func TestModelsCmd_JSONIsTheAPIObjectsIndented(t *testing.T) {
	f := newAPIFixture(t)
	out := f.run(t, "models", "--output", "json")
	require.JSONEq(t, f.raw(t, "/v1/models", "models"), out)
	require.True(t, strings.HasPrefix(out, "[\n  {"), "json output must be indented, got:\n%s", out)
}

func TestDeploymentsCmd_TableShowsStatusAndEnvironment(t *testing.T) {
	f := newAPIFixture(t)
	rows := table(f.run(t, "deployments", f.model.ID))
	require.Equal(t, []string{"ID", "NAME", "STATUS", "REPLICAS", "ENVIRONMENT", "CREATED"}, rows[0])
	require.Len(t, rows, 4, "header and three deployments")
	byID := map[string][]string{}
	for _, r := range rows[1:] {
		require.Len(t, r, 6, "row %v", r)
		byID[r[0]] = r
	}
	require.Equal(t, []string{"development", "BUILDING", "0", "-"}, byID[f.dev.ID][1:5])
	require.Equal(t, []string{"deployment-1", "BUILDING", "0", "production"}, byID[f.prod.ID][1:5])
	require.Equal(t, f.prod.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"), byID[f.prod.ID][5])
}

func TestBuildLogsCmd_PrintsTheStatusThenTheBuildOutput(t *testing.T) {
	f := newAPIFixture(t)
	ctx := context.Background()
	require.NoError(t, store.SetDeploymentStatus(ctx, f.db, f.prod.ID, modelplane.DeploymentBuilding, "installing 1 requirement on node n1"))
	require.NoError(t, store.AppendBuildLog(ctx, f.db, f.prod.ID, "installing 1 requirement on node n1\nSuccessfully installed mpgreet-1.0"))
	out := f.run(t, "build-logs", f.model.Name, f.prod.ID)
	require.Equal(t, "# deployment "+f.prod.ID+" is BUILDING: installing 1 requirement on node n1\n"+
		"installing 1 requirement on node n1\nSuccessfully installed mpgreet-1.0\n", out)
	out = f.run(t, "build-logs", f.model.ID, f.dev.ID, "-o", "json")
	require.JSONEq(t, `{"deployment_id":"`+f.dev.ID+`","status":"BUILDING","status_reason":"","lines":[]}`, out)
}

func TestDeploymentsCmd_TakesTheModelsName(t *testing.T) {
	f := newAPIFixture(t)
	for _, cmd := range []string{"deployments", "environments"} {
		byName := f.run(t, cmd, f.model.Name, "-o", "json")
		require.JSONEq(t, f.run(t, cmd, f.model.ID, "-o", "json"), byName, "%s by name lists what %s by ID does", cmd, cmd)
	}
}

func TestDeploymentsCmd_JSONIsTheAPIObjects(t *testing.T) {
	f := newAPIFixture(t)
	out := f.run(t, "deployments", f.model.ID, "-o", "json")
	require.JSONEq(t, f.raw(t, "/v1/models/"+f.model.ID+"/deployments", "deployments"), out)
}

func TestEnvironmentsCmd_TableShowsPromotionInFlight(t *testing.T) {
	f := newAPIFixture(t)
	out := f.run(t, "environments", f.model.ID)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.Len(t, lines, 3, "header, production and staging:\n%s", out)
	require.Equal(t, []string{"NAME", "CURRENT", "CANDIDATE", "INSTANCE", "PROMOTION"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"production", f.prod.ID, "(deployment-1)", "-", "CPU", "-"}, strings.Fields(lines[1]))
	require.Equal(t, []string{"staging", f.prod.ID, "(deployment-1)", f.cand.ID, "(deployment-2)", "CPU", "RAMPING_UP", "30%"},
		strings.Fields(lines[2]))
}

func TestEnvironmentsCmd_JSONIsTheAPIObjects(t *testing.T) {
	f := newAPIFixture(t)
	out := f.run(t, "environments", f.model.ID, "--output", "json")
	require.JSONEq(t, f.raw(t, "/v1/models/"+f.model.ID+"/environments", "environments"), out)
}

func TestClientCmds_BadKeyFailsWithTheAPIsMessage(t *testing.T) {
	f := newAPIFixture(t)
	bad := "mp_" + strings.Repeat("x", 12) + "_" + strings.Repeat("a", 32)
	r := runClient(t, "", nil, "models", "--url", f.url, "--api-key", bad)
	require.NotZero(t, r.exit)
	require.Empty(t, r.stdout)
	require.Equal(t, "Error: invalid API key (HTTP 401 unauthenticated); the key came from --api-key\n", r.stderr)
}

func TestClientCmds_UnknownModelFailsWithOneLine(t *testing.T) {
	f := newAPIFixture(t)
	for _, cmd := range []string{"deployments", "environments"} {
		r := runClient(t, "", nil, cmd, "zzzzzzzz", "--url", f.url, "--api-key", f.key)
		require.NotZero(t, r.exit, cmd)
		require.Equal(t, "Error: model \"zzzzzzzz\" not found (HTTP 404 not_found)\n", r.stderr, cmd)
	}
}

func TestClientCmds_URLAndKeyComeFromTheEnvironment(t *testing.T) {
	f := newAPIFixture(t)
	r := runClient(t, "", []string{"MODELPLANE_URL=" + f.url, "MODELPLANE_API_KEY=" + f.key}, "models")
	require.Zero(t, r.exit, r.stderr)
	require.Contains(t, r.stdout, f.model.ID)

	// Flags win over the environment.
	r = runClient(t, "", []string{"MODELPLANE_URL=http://" + freeAddr(t), "MODELPLANE_API_KEY=wrong"},
		"models", "--url", f.url, "--api-key", f.key)
	require.Zero(t, r.exit, r.stderr)
	require.Contains(t, r.stdout, f.model.ID)
}

func TestClientCmds_KeyDefaultsToTheFileDevWrote(t *testing.T) {
	f := newAPIFixture(t)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, ".modelplane"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".modelplane", "api-key"), []byte(f.key+"\n"), 0o600))
	r := runClient(t, dir, []string{"MODELPLANE_URL=" + f.url}, "models")
	require.Zero(t, r.exit, r.stderr)
	require.Contains(t, r.stdout, f.model.ID)
}

func TestClientCmds_MissingKeySaysHowToGetOne(t *testing.T) {
	f := newAPIFixture(t)
	r := runClient(t, "", []string{"MODELPLANE_URL=" + f.url}, "models")
	require.NotZero(t, r.exit)
	require.True(t, strings.HasPrefix(r.stderr, "Error: no API key"), r.stderr)
	require.Contains(t, r.stderr, "MODELPLANE_API_KEY")
	require.Contains(t, r.stderr, "modelplane dev")
	require.Contains(t, r.stderr, "modelplane keys create")
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line, got:\n%s", r.stderr)
}

func TestClientCmds_UnreachableAPIIsExplained(t *testing.T) {
	r := runClient(t, "", []string{"MODELPLANE_API_KEY=k"}, "models", "--url", "http://"+freeAddr(t))
	require.NotZero(t, r.exit)
	require.Contains(t, r.stderr, "Error: cannot reach the API at http://")
	require.Contains(t, r.stderr, "MODELPLANE_URL")
}

func TestClientCmds_UnknownOutputFormatIsRefused(t *testing.T) {
	r := runClient(t, "", []string{"MODELPLANE_API_KEY=k"}, "models", "--output", "yaml")
	require.NotZero(t, r.exit)
	require.Equal(t, "Error: --output \"yaml\": use table or json\n", r.stderr)
}

func TestClientCmds_HelpDoesNotShowTheKey(t *testing.T) {
	r := runClient(t, "", []string{"MODELPLANE_API_KEY=mp_secret_value"}, "models", "--help")
	require.Zero(t, r.exit, r.stderr)
	require.NotContains(t, r.stdout+r.stderr, "mp_secret_value")
}
