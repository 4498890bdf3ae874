package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apiv1"
)

// fakeAPI stands in for the management API's routes that change deployments: it records
// every call and answers deployment and environment reads from scripted sequences, one
// step per read, staying on the last.
type fakeAPI struct {
	t   *testing.T
	url string

	mu           sync.Mutex
	calls        []string          // "METHOD /path"
	bodies       map[string]string // "METHOD /path" -> last JSON body
	archive      []byte
	models       []map[string]any
	statuses     []string // the new deployment's status, read by read
	envSteps     []string // "promoting" or "done", read by read
	conflict     bool     // promote routes answer 409
	deploymentID string
}

func newFakeAPI(t *testing.T, statuses ...string) *fakeAPI {
	f := &fakeAPI{t: t, bodies: map[string]string{}, statuses: statuses, deploymentID: "dep00003", models: []map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		f.answer(w, 200, map[string]any{"models": f.models})
	})
	mux.HandleFunc("POST /v1/archives", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.archive = b
		f.mu.Unlock()
		f.answer(w, 200, map[string]any{"id": "sha256:abc", "size": len(b)})
	})
	mux.HandleFunc("POST /v1/models", func(w http.ResponseWriter, r *http.Request) {
		f.answer(w, 200, map[string]any{"model": f.model("newmodel"), "deployment": f.deployment("newmodel", "BUILDING")})
	})
	mux.HandleFunc("GET /v1/models/{model}", func(w http.ResponseWriter, r *http.Request) {
		f.answer(w, 200, f.model(r.PathValue("model")))
	})
	mux.HandleFunc("DELETE /v1/models/{model}", func(w http.ResponseWriter, r *http.Request) {
		f.answer(w, 200, map[string]any{"id": r.PathValue("model"), "deleted": true})
	})
	mux.HandleFunc("POST /v1/models/{model}/deployments", func(w http.ResponseWriter, r *http.Request) {
		m := r.PathValue("model")
		f.answer(w, 200, map[string]any{"model": f.model(m), "deployment": f.deployment(m, "BUILDING")})
	})
	mux.HandleFunc("GET /v1/models/{model}/deployments/{dep}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		s := f.statuses[0]
		if len(f.statuses) > 1 {
			f.statuses = f.statuses[1:]
		}
		f.mu.Unlock()
		f.answer(w, 200, f.deployment(r.PathValue("model"), s))
	})
	mux.HandleFunc("DELETE /v1/models/{model}/deployments/{dep}", func(w http.ResponseWriter, r *http.Request) {
		f.answer(w, 200, map[string]any{"id": r.PathValue("dep"), "deleted": true, "model_id": r.PathValue("model")})
	})
	for _, action := range []string{"activate", "deactivate"} {
		mux.HandleFunc("POST /v1/models/{model}/deployments/{dep}/"+action, func(w http.ResponseWriter, r *http.Request) {
			f.answer(w, 200, map[string]any{"success": true})
		})
	}
	promote := func(w http.ResponseWriter, r *http.Request) {
		if f.conflict {
			f.answer(w, 409, map[string]any{"error": map[string]any{"code": "conflict", "message": "a promotion of staging is already running"}})
			return
		}
		f.answer(w, 200, f.deployment(r.PathValue("model"), "ACTIVE"))
	}
	mux.HandleFunc("POST /v1/models/{model}/deployments/{dep}/promote", promote)
	mux.HandleFunc("POST /v1/models/{model}/environments/{env}/promote", promote)
	mux.HandleFunc("GET /v1/models/{model}/environments/{env}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		step := "done"
		if len(f.envSteps) > 0 {
			step = f.envSteps[0]
			f.envSteps = f.envSteps[1:]
		}
		f.mu.Unlock()
		env := map[string]any{"name": r.PathValue("env"), "model_id": r.PathValue("model"),
			"current_deployment": map[string]any{"id": "old00001", "name": "deployment-1"}, "in_progress_promotion": nil}
		if step == "promoting" {
			env["in_progress_promotion"] = map[string]any{"status": "RAMPING_UP", "percent_traffic_to_new_version": 50, "error_message": ""}
		} else {
			env["current_deployment"] = f.deployment(r.PathValue("model"), "ACTIVE")
		}
		f.answer(w, 200, env)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		f.mu.Lock()
		f.calls = append(f.calls, key)
		if r.Header.Get("Content-Type") == "application/json" {
			f.bodies[key] = string(b)
		}
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Api-Key test-key" {
			t.Errorf("%s: want the key from %s, got %q", key, envAPIKey, r.Header.Get("Authorization"))
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fakeAPI) model(id string) map[string]any {
	return map[string]any{"id": id, "name": "echo", "deployments_count": 1, "created_at": "2026-01-02T03:04:05Z"}
}

func (f *fakeAPI) deployment(modelID, status string) map[string]any {
	return map[string]any{"id": f.deploymentID, "name": "deployment-3", "model_id": modelID, "status": status,
		"active_replica_count": map[bool]int{true: 1}[status == "ACTIVE"], "created_at": "2026-01-02T03:04:05Z",
		"autoscaling_settings": map[string]any{"min_replica": 0, "max_replica": 1}}
}

func (f *fakeAPI) answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	require.NoError(f.t, json.NewEncoder(w).Encode(v))
}

// run runs the CLI against the fake with the URL and key from the environment.
func (f *fakeAPI) run(t *testing.T, args ...string) cliResult {
	t.Helper()
	if args[0] == "push" || args[0] == "promote" {
		args = append(args, "--poll-interval", "5ms") // the default, a second, would make the tests slow
	}
	return runClient(t, "", []string{envAPIURL + "=" + f.url, envAPIKey + "=test-key"}, args...)
}

// mutations lists the calls that were not reads.
func (f *fakeAPI) mutations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "GET ") {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeAPI) body(t *testing.T, call string) map[string]any {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.bodies[call]), &v), "body of %s: %q", call, f.bodies[call])
	return v
}

// archiveFiles lists the files in the tar.gz the fake received, with their contents.
func (f *fakeAPI) archiveFiles(t *testing.T) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(f.archive))
	require.NoError(t, err, "the upload must be gzip")
	tr := tar.NewReader(gz)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[strings.TrimPrefix(h.Name, "./")] = string(b)
	}
}

const echoConfig = "model_name: echo\n"

func modelDir(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(echoConfig), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model", "model.py"), []byte("class Model:\n    pass\n"), 0o644))
	return dir
}

func TestPushCmd_CreatesTheModelWhenAbsentAndShowsEachStage(t *testing.T) {
	f := newFakeAPI(t, "BUILDING", "DEPLOYING", "DEPLOYING", "LOADING_MODEL", "ACTIVE")
	r := f.run(t, "push", modelDir(t))
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, []string{"POST /v1/archives", "POST /v1/models"}, f.mutations())

	files := f.archiveFiles(t)
	require.Equal(t, echoConfig, files["config.yaml"], "the upload must be the package; got files %v", files)
	require.Contains(t, files, "model/model.py")

	body := f.body(t, "POST /v1/models")
	src := body["source"].(map[string]any)
	require.Equal(t, "model_archive", src["kind"])
	require.Equal(t, "echo", src["name"])
	require.Equal(t, "sha256:abc", src["s3_key"], "the archive is named as the spec's s3_key")
	require.NotContains(t, src, "archive_id")
	dep := src["deployment"].(map[string]any)
	require.Equal(t, "echo", dep["config"].(map[string]any)["model_name"], "push sends config.yaml as the spec's config")
	require.Equal(t, "model", dep["config"].(map[string]any)["model_module_dir"], "with its defaults, as it runs")
	require.Equal(t, echoConfig, dep["raw_config"], "and its text")
	require.NotContains(t, dep, "is_development")
	require.NotContains(t, dep, "environment_name")
	require.NotContains(t, body, "development", "only the spec's spellings are sent")
	require.NotContains(t, body, "environment")

	require.Equal(t, "deployment-3 (dep00003): BUILDING\n"+
		"deployment-3 (dep00003): DEPLOYING, 0/1 replicas ready\n"+
		"deployment-3 (dep00003): LOADING_MODEL, 0/1 replicas ready\n"+
		"deployment-3 (dep00003): ACTIVE, 1/1 replicas ready\n"+
		"echo: deployment deployment-3 (dep00003) is ACTIVE (model newmodel)\n", r.stdout)
}

func TestPushCmd_ReusesTheModelWithTheSameName(t *testing.T) {
	f := newFakeAPI(t, "ACTIVE")
	f.models = []map[string]any{f.model("other001"), f.model("m0000001")}
	f.models[0]["name"] = "other"
	r := f.run(t, "push", modelDir(t), "--development", "--no-wait")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, []string{"POST /v1/archives", "POST /v1/models/m0000001/deployments"}, f.mutations())
	body := f.body(t, "POST /v1/models/m0000001/deployments")
	require.Equal(t, true, body["source"].(map[string]any)["deployment"].(map[string]any)["is_development"])
	require.NotContains(t, body, "development")
	require.NotContains(t, body["source"], "name", "a new deployment of a model does not name the model")
	require.Equal(t, "echo: deployment deployment-3 (dep00003) is BUILDING (model m0000001)\n", r.stdout)
}

func TestPushCmd_ModelNameFlagWinsOverConfig(t *testing.T) {
	f := newFakeAPI(t, "ACTIVE")
	r := f.run(t, "push", modelDir(t), "--model-name", "renamed", "--name", "v2")
	require.Zero(t, r.exit, r.stderr)
	src := f.body(t, "POST /v1/models")["source"].(map[string]any)
	require.Equal(t, "renamed", src["name"])
	require.Equal(t, "v2", src["deployment"].(map[string]any)["deployment_name"])
}

func TestPushCmd_DeployFailedExitsOneWithTheStatus(t *testing.T) {
	f := newFakeAPI(t, "BUILDING", "DEPLOY_FAILED")
	r := f.run(t, "push", modelDir(t))
	require.Equal(t, 1, r.exit, "stdout:\n%s", r.stdout)
	require.Equal(t, "Error: deployment deployment-3 (dep00003) is DEPLOY_FAILED\n", r.stderr)
	require.Contains(t, r.stdout, "DEPLOY_FAILED, 0/1 replicas ready\n")
}

func TestPushCmd_JSONPrintsTheFinalModelAndDeploymentOnly(t *testing.T) {
	f := newFakeAPI(t, "BUILDING", "ACTIVE")
	r := f.run(t, "push", modelDir(t), "--output", "json")
	require.Zero(t, r.exit, r.stderr)
	var out struct {
		Model      map[string]any `json:"model"`
		Deployment map[string]any `json:"deployment"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), "stdout must be one JSON object:\n%s", r.stdout)
	require.Equal(t, "newmodel", out.Model["id"])
	require.Equal(t, "ACTIVE", out.Deployment["status"])
}

func TestPushCmd_PromoteWaitsUntilProductionServesTheDeployment(t *testing.T) {
	f := newFakeAPI(t, "LOADING_MODEL", "ACTIVE")
	f.envSteps = []string{"promoting", "promoting", "done"}
	r := f.run(t, "push", modelDir(t), "--promote")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, "production", f.body(t, "POST /v1/models")["source"].(map[string]any)["deployment"].(map[string]any)["environment_name"])
	require.Contains(t, r.stdout, "production: promoting deployment-3 (dep00003): RAMPING_UP, 50% of traffic\n")
	require.Contains(t, r.stdout, "production: served by deployment-3 (dep00003)\n")
	require.True(t, strings.HasSuffix(r.stdout, "is ACTIVE and serves production (model newmodel)\n"), r.stdout)
}

func TestPushCmd_DevelopmentWithEnvironmentIsRefused(t *testing.T) {
	f := newFakeAPI(t, "ACTIVE")
	r := f.run(t, "push", modelDir(t), "--development", "--promote")
	require.Equal(t, 1, r.exit)
	require.Contains(t, r.stderr, "--development cannot go with --environment")
	require.Empty(t, f.mutations())
}

func TestPromoteCmd_ProductionUsesTheDeploymentRoute(t *testing.T) {
	f := newFakeAPI(t, "ACTIVE")
	r := f.run(t, "promote", "m0000001", "dep00003", "--no-wait")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, []string{"POST /v1/models/m0000001/deployments/dep00003/promote"}, f.mutations())
	require.Equal(t, map[string]any{"scale_down_previous_production": true},
		f.body(t, "POST /v1/models/m0000001/deployments/dep00003/promote"))
}

func TestPromoteCmd_StagingUsesTheEnvironmentRouteAndWaits(t *testing.T) {
	f := newFakeAPI(t, "ACTIVE")
	f.envSteps = []string{"promoting", "done"}
	r := f.run(t, "promote", "m0000001", "dep00003", "--environment", "staging", "--keep-previous")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, []string{"POST /v1/models/m0000001/environments/staging/promote"}, f.mutations())
	require.Equal(t, map[string]any{"deployment_id": "dep00003", "scale_down_previous_deployment": false},
		f.body(t, "POST /v1/models/m0000001/environments/staging/promote"))
	require.True(t, strings.HasSuffix(r.stdout, "is ACTIVE and serves staging (model m0000001)\n"), r.stdout)
}

func TestPromoteCmd_ConflictIsOneClearLine(t *testing.T) {
	f := newFakeAPI(t, "ACTIVE")
	f.conflict = true
	r := f.run(t, "promote", "m0000001", "dep00003", "--environment", "staging")
	require.Equal(t, 1, r.exit)
	require.Empty(t, r.stdout)
	require.Equal(t, "Error: a promotion of staging is already running (HTTP 409 conflict); "+
		"see `modelplane environments m0000001`\n", r.stderr)
}

func TestActionCmds_CallTheirRoutesAndSayWhatTheyDid(t *testing.T) {
	cases := []struct {
		args []string
		call string
		out  string
	}{
		{[]string{"activate", "m0000001", "dep00003"}, "POST /v1/models/m0000001/deployments/dep00003/activate",
			"activated deployment dep00003 of model m0000001\n"},
		{[]string{"deactivate", "m0000001", "development"}, "POST /v1/models/m0000001/deployments/development/deactivate",
			"deactivated deployment development of model m0000001\n"},
		{[]string{"delete", "m0000001", "dep00003"}, "DELETE /v1/models/m0000001/deployments/dep00003",
			"deleted deployment dep00003 of model m0000001\n"},
		{[]string{"delete", "m0000001"}, "DELETE /v1/models/m0000001",
			"deleted model m0000001 with all its deployments and environments\n"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f := newFakeAPI(t, "ACTIVE")
			r := f.run(t, tc.args...)
			require.Zero(t, r.exit, r.stderr)
			require.Equal(t, []string{tc.call}, f.mutations())
			require.Equal(t, tc.out, r.stdout)
		})
	}
}

func TestActionCmds_ModelByNameIsResolvedToItsID(t *testing.T) {
	f := newFakeAPI(t, "ACTIVE")
	f.models = []map[string]any{f.model("m0000001")}
	r := f.run(t, "delete", "echo", "dep00003", "-o", "json")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, []string{"DELETE /v1/models/m0000001/deployments/dep00003"}, f.mutations())
	require.JSONEq(t, `{"id":"dep00003","model_id":"m0000001","deleted":true}`, r.stdout)
}

func TestProgress_TerminalRewritesOneLineAndEndsIt(t *testing.T) {
	var b strings.Builder
	p := newProgress(&b, true)
	d := apiv1.DeploymentV1{ID: "q4z8m2xw", Name: "deployment-3", Status: "LOADING_MODEL"}
	p.deployment(d)
	p.deployment(d) // unchanged: not written again
	d.Status, d.ActiveReplicaCount = "ACTIVE", 1
	p.deployment(d)
	p.done()
	require.Equal(t, "\rdeployment-3 (q4z8m2xw): LOADING_MODEL, 0/1 replicas ready\x1b[K"+
		"\rdeployment-3 (q4z8m2xw): ACTIVE, 1/1 replicas ready\x1b[K\n", b.String())
}

func TestProgress_BuildingShowsHowFarTheBuildIs(t *testing.T) {
	var b strings.Builder
	p := newProgress(&b, false)
	installing, reused := "installing 2 requirements on node n1", "requirements installed on node n1 (environment 3f2a), reused"
	d := apiv1.DeploymentV1{ID: "q4z8m2xw", Name: "deployment-3", Status: "BUILDING"}
	p.deployment(d)
	d.StatusReason = &installing
	p.deployment(d)
	d.StatusReason = &reused
	p.deployment(d)
	d.Status, d.StatusReason, d.ActiveReplicaCount = "ACTIVE", nil, 1
	p.deployment(d)
	require.Equal(t, "deployment-3 (q4z8m2xw): BUILDING\n"+
		"deployment-3 (q4z8m2xw): BUILDING: installing 2 requirements on node n1\n"+
		"deployment-3 (q4z8m2xw): BUILDING: requirements installed on node n1 (environment 3f2a), reused\n"+
		"deployment-3 (q4z8m2xw): ACTIVE, 1/1 replicas ready\n", b.String())
}

func TestPushFlags_EnvironmentFromFlags(t *testing.T) {
	cases := []struct {
		flags pushFlags
		env   string
		err   string
	}{
		{pushFlags{}, "", ""},
		{pushFlags{Promote: true}, "production", ""},
		{pushFlags{Environment: "staging"}, "staging", ""},
		{pushFlags{Promote: true, Environment: "production"}, "production", ""},
		{pushFlags{Promote: true, Environment: "staging"}, "", "--promote deploys to production"},
		{pushFlags{Development: true, Environment: "staging"}, "", "--development cannot go with --environment"},
		{pushFlags{Development: true, Name: "x"}, "", "--development cannot go with --name"},
	}
	for _, tc := range cases {
		env, err := tc.flags.environment()
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, "%+v", tc.flags)
			continue
		}
		require.NoError(t, err, "%+v", tc.flags)
		require.Equal(t, tc.env, env, "%+v", tc.flags)
	}
}
