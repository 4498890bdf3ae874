package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// ExecuteWorkflow records the workflow started and answers as Temporal would.
func (f *fakeTemporal) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, o.ID)
	return fakeRun{id: o.ID}, nil
}

// startedWorkflows returns the IDs of the workflows started so far and forgets them.
func (f *fakeTemporal) startedWorkflows() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.started
	f.started = nil
	return out
}

type fakeRun struct {
	client.WorkflowRun
	id string
}

func (r fakeRun) GetID() string    { return r.id }
func (r fakeRun) GetRunID() string { return "run" }

// greeterConfig is the config.yaml of the package createFixture uploads.
const greeterConfig = "# the greeter\nmodel_name: greeter\nresources:\n  cpu: \"1\"\nenvironment_variables:\n  GREETING: hello\n"

// createFixture serves the API with a fake Temporal, for a workspace (with its model "echo")
// that uploaded the greeter package.
type createFixture struct {
	*fixture
	tc      *fakeTemporal
	m       store.Model
	key     string
	auth    string
	archive string
}

func newCreateFixture(t *testing.T, maxArchiveBytes int64) *createFixture {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	tc := &fakeTemporal{}
	deps := apitest.Deps(t, db)
	deps.Temporal, deps.MaxArchiveBytes = tc, maxArchiveBytes
	f := &createFixture{fixture: &fixture{db: db, e: api.New(deps)}, tc: tc}
	f.m, _, f.key = f.workspace(t)
	f.auth = "Api-Key " + f.key
	f.archive = f.uploadGreeter(t, f.key)
	return f
}

func (f *createFixture) uploadGreeter(t *testing.T, key string) string {
	t.Helper()
	rec := upload(t, f.e, key, "application/gzip", greeterPackage(t))
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, rec.Code, rec.Body.String())
	var a struct{ ID string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &a))
	return a.ID
}

func greeterPackage(t *testing.T) []byte {
	t.Helper()
	return packDir(t, map[string]string{
		"config.yaml":    greeterConfig,
		"model/model.py": "class Model:\n    def predict(self, x):\n        return x\n",
	})
}

// configOf is config.yaml text as a create request's config: parsed, with its defaults, as
// clients send it.
func configOf(t *testing.T, text string) map[string]any {
	t.Helper()
	cfg, err := modelpkg.ParseConfig([]byte(text))
	require.NoError(t, err)
	b, err := cfg.JSON()
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// deployment reads a deployment's row.
func (f *createFixture) deployment(t *testing.T, modelID, id string) store.Deployment {
	t.Helper()
	d, err := store.DeploymentByID(context.Background(), f.db, modelID, id)
	require.NoError(t, err)
	return d
}

// ids returns the model and deployment IDs of a create route's answer.
func ids(t *testing.T, r response) (string, string) {
	t.Helper()
	m, ok := r.Body["model"].(map[string]any)
	require.True(t, ok, "the answer has the model: %v", r.Body)
	d, ok := r.Body["deployment"].(map[string]any)
	require.True(t, ok, "the answer has the deployment: %v", r.Body)
	return m["id"].(string), d["id"].(string)
}

func TestCreateModel_SpecBodyIsAnswered200AndItsPayloadKept(t *testing.T) {
	f := newCreateFixture(t, 0)
	r := f.send(t, http.MethodPost, "/v1/models", f.auth, jsonBody(t, map[string]any{"source": map[string]any{
		"kind": "model_archive", "name": "greeter", "s3_key": f.archive, "disable_archive_download": true,
		"deployment": map[string]any{
			"config": configOf(t, greeterConfig), "raw_config": greeterConfig, "deployment_name": "first",
			"labels": map[string]any{"team": "ml"}, "user_env": map[string]any{"truss_version": "0.9.50"},
			"deploy_timeout_minutes": 30, "preserve_env_instance_type": false,
			"environment_name": nil, "is_development": false,
		}}}))
	require.Equal(t, http.StatusOK, r.Status, "the spec answers 200: %v", r.Body)
	modelID, depID := ids(t, r)
	dep := r.Body["deployment"].(map[string]any)
	require.Equal(t, "first", dep["name"])
	require.Equal(t, map[string]any{"team": "ml"}, dep["labels"])
	require.Equal(t, "greeter", r.Body["model"].(map[string]any)["name"])
	require.Equal(t, []string{contract.DeploymentWorkflowID(depID)}, f.tc.startedWorkflows())

	d := f.deployment(t, modelID, depID)
	require.Empty(t, d.Config, "a config that runs the model as the package's does changes nothing")
	require.Equal(t, greeterConfig, *d.RawConfig)
	require.Equal(t, store.JSONMap{"truss_version": "0.9.50"}, d.UserEnv)
	require.Equal(t, 30, *d.DeployTimeoutMinutes)
	require.False(t, d.PreserveEnvInstanceType)

	got := f.do(t, http.MethodGet, "/v1/models/"+modelID+"/deployments/"+depID, f.auth)
	require.Equal(t, map[string]any{"team": "ml"}, got.Body["labels"])
	cfg := f.do(t, http.MethodGet, "/v1/models/"+modelID+"/deployments/"+depID+"/config", f.auth)
	require.Equal(t, http.StatusOK, cfg.Status, "%v", cfg.Body)
	require.Equal(t, greeterConfig, cfg.Body["raw_config"])
	require.NotContains(t, cfg.Body["config"], "truss_version", "user_env never reaches the model's config")
	require.Equal(t, map[string]any{"GREETING": "hello"}, cfg.Body["config"].(map[string]any)["environment_variables"])

	// disable_archive_download holds for every deployment of the model.
	dl := f.do(t, http.MethodGet, "/v1/models/"+modelID+"/deployments/"+depID+"/download", f.auth)
	require.Equal(t, http.StatusForbidden, dl.Status, "%v", dl.Body)
	require.Contains(t, message(dl), "disable_archive_download")
	r = f.send(t, http.MethodPost, "/v1/models/"+modelID+"/deployments", f.auth, jsonBody(t, map[string]any{
		"source": map[string]any{"s3_key": f.archive, "deployment": map[string]any{"config": configOf(t, greeterConfig)}}}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	_, second := ids(t, r)
	dl = f.do(t, http.MethodGet, "/v1/models/"+modelID+"/deployments/"+second+"/download", f.auth)
	require.Equal(t, http.StatusForbidden, dl.Status)
	// Without it a package downloads as before.
	dl = f.do(t, http.MethodGet, "/v1/models/"+f.m.ID+"/deployments/"+f.createDeployment(t, nil)+"/download", f.auth)
	require.Equal(t, http.StatusOK, dl.Status, "%v", dl.Body)
}

// createDeployment adds a deployment of the greeter package to the fixture's model with the
// given payload (nil: none) and returns its ID.
func (f *createFixture) createDeployment(t *testing.T, payload map[string]any) string {
	t.Helper()
	src := map[string]any{"kind": "model_archive", "s3_key": f.archive}
	if payload != nil {
		src["deployment"] = payload
	}
	r := f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth, jsonBody(t, map[string]any{"source": src}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	_, id := ids(t, r)
	return id
}

func TestCreateDeployment_AConfigThatDiffersIsTheDeploymentsConfig(t *testing.T) {
	f := newCreateFixture(t, 0)
	bonjour := strings.Replace(greeterConfig, "hello", "bonjour", 1)
	configPath := func(id string) string { return "/v1/models/" + f.m.ID + "/deployments/" + id + "/config" }

	// Only the config: it is stored, and GET config answers it written as YAML.
	id := f.createDeployment(t, map[string]any{"config": configOf(t, bonjour)})
	d := f.deployment(t, f.m.ID, id)
	require.Equal(t, map[string]any{"GREETING": "bonjour"}, d.Config["environment_variables"])
	require.Nil(t, d.RawConfig)
	r := f.do(t, http.MethodGet, configPath(id), f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Contains(t, r.Body["raw_config"], "GREETING: bonjour")
	require.Equal(t, map[string]any{"GREETING": "bonjour"}, r.Body["config"].(map[string]any)["environment_variables"])

	// With its text: the text is answered as given.
	id = f.createDeployment(t, map[string]any{"config": configOf(t, bonjour), "raw_config": bonjour})
	require.Equal(t, bonjour, *f.deployment(t, f.m.ID, id).RawConfig)
	r = f.do(t, http.MethodGet, configPath(id), f.auth)
	require.Equal(t, bonjour, r.Body["raw_config"])
	require.Equal(t, map[string]any{"GREETING": "bonjour"}, r.Body["config"].(map[string]any)["environment_variables"])

	// A text that is not the config the deployment runs is dropped, as Baseten drops an
	// invalid one; the config holds.
	for _, raw := range []string{greeterConfig, "model_name: [", ""} {
		id = f.createDeployment(t, map[string]any{"config": configOf(t, bonjour), "raw_config": raw})
		require.Nil(t, f.deployment(t, f.m.ID, id).RawConfig, "raw_config %q", raw)
		r = f.do(t, http.MethodGet, configPath(id), f.auth)
		require.Contains(t, r.Body["raw_config"], "GREETING: bonjour")
	}

	// Written another way, without its defaults or with keys modelplane does not know, the
	// package's config is still the package's.
	for _, cfg := range []map[string]any{
		{"model_name": "greeter", "resources": map[string]any{"cpu": 1}, "environment_variables": map[string]any{"GREETING": "hello"}},
		{"model_name": "greeter", "resources": map[string]any{"cpu": "1"}, "environment_variables": map[string]any{"GREETING": "hello"},
			"examples_filename": "examples.yaml", "requirements": []any{}},
	} {
		id = f.createDeployment(t, map[string]any{"config": cfg})
		require.Empty(t, f.deployment(t, f.m.ID, id).Config, "%v is the package's config", cfg)
		r = f.do(t, http.MethodGet, configPath(id), f.auth)
		require.Equal(t, greeterConfig, r.Body["raw_config"], "the package's config.yaml is answered")
	}

	// The development deployment's patches start from the config it runs.
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth, jsonBody(t, map[string]any{
		"source": map[string]any{"s3_key": f.archive, "deployment": map[string]any{
			"config": configOf(t, bonjour), "raw_config": bonjour, "is_development": true}}}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, true, r.Body["deployment"].(map[string]any)["is_development"])
	st := f.do(t, http.MethodGet, "/v1/models/"+f.m.ID+"/deployments/development/patches/state", f.auth)
	require.Equal(t, http.StatusOK, st.Status, "%v", st.Body)
	require.Equal(t, bonjour, st.Body["running_patch_point"].(map[string]any)["config"])
}

func TestCreate_AConfigBreakingTheRulesIs400NamingTheField(t *testing.T) {
	f := newCreateFixture(t, 0)
	for _, tt := range []struct {
		config any
		text   string
	}{
		{map[string]any{"resources": map[string]any{"cpu": "1"}}, "source.deployment.config.model_name: is required"},
		{map[string]any{"model_name": "greeter", "resources": map[string]any{"accelerator": "H100:99"}}, "source.deployment.config.resources.accelerator"},
		{map[string]any{"model_name": "greeter", "runtime": "cobol"}, "source.deployment.config.runtime"},
		{map[string]any{"model_name": "greeter", "environment_variables": map[string]any{"PORT": "1"}}, "source.deployment.config.environment_variables.PORT"},
		{map[string]any{"model_name": "greeter", "runtime": map[string]any{"prewarm_imports": []any{"torch", "not a module"}}}, "source.deployment.config.runtime.prewarm_imports[1]"},
		{"model_name: greeter", "source.deployment.config: must be an object"},
		{[]any{1}, "source.deployment.config: must be an object"},
	} {
		for _, path := range []string{"/v1/models", "/v1/models/" + f.m.ID + "/deployments"} {
			src := map[string]any{"s3_key": f.archive, "deployment": map[string]any{"config": tt.config}}
			if path == "/v1/models" {
				src["name"] = "greeter"
			}
			r := f.send(t, http.MethodPost, path, f.auth, jsonBody(t, map[string]any{"source": src}))
			require.Equal(t, http.StatusBadRequest, r.Status, "%s %v: %v", path, tt.config, r.Body)
			require.Contains(t, message(r), tt.text)
		}
	}
	require.Empty(t, f.tc.startedWorkflows(), "a refused request starts nothing")
	f.requireNothingMade(t)
}

// requireNothingMade checks that the workspace still has only its model "echo", without
// deployments.
func (f *createFixture) requireNothingMade(t *testing.T) {
	t.Helper()
	ms, err := store.ListModels(context.Background(), f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	require.Len(t, ms, 1, "a refused request leaves no model behind")
	ds, err := store.ListDeployments(context.Background(), f.db, f.m.ID)
	require.NoError(t, err)
	require.Empty(t, ds, "a refused request leaves no deployment behind")
}

func TestCreate_RefusesContradictionsAndBadFields(t *testing.T) {
	f := newCreateFixture(t, 0)
	newModel := func(src map[string]any, top map[string]any) map[string]any {
		src["name"] = "greeter"
		return deploymentBody(f, src, top)
	}
	newDep := func(src map[string]any, top map[string]any) map[string]any { return deploymentBody(f, src, top) }
	dep := func(kv ...any) map[string]any {
		out := map[string]any{"deployment": map[string]any{}}
		for i := 0; i+1 < len(kv); i += 2 {
			out["deployment"].(map[string]any)[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	models, deployments := "/v1/models", "/v1/models/"+f.m.ID+"/deployments"
	for _, tt := range []struct {
		name, path string
		body       map[string]any
		want       int
		text       string
	}{
		{"development spelt twice, differently", deployments, newDep(dep("is_development", false), map[string]any{"development": true}), 400,
			"development (true) and source.deployment.is_development (false) disagree"},
		{"environment spelt twice, differently", deployments, newDep(dep("environment_name", "production"), map[string]any{"environment": "staging"}), 400,
			`environment "staging" and source.deployment.environment_name "production" disagree`},
		{"deployment name spelt twice, differently", deployments, newDep(dep("deployment_name", "a", "name", "b"), nil), 400,
			`source.deployment.deployment_name "a" and source.deployment.name "b" disagree`},
		{"development to an environment", deployments, newDep(dep("is_development", true, "environment_name", "production"), nil), 400,
			"source.deployment.environment_name: the development deployment"},
		{"development named", deployments, newDep(dep("is_development", true, "deployment_name", "x"), nil), 400,
			"source.deployment.deployment_name: the development deployment is always named development"},
		{"development without preserving", deployments, newDep(dep("is_development", true, "preserve_env_instance_type", false), nil), 400,
			"source.deployment.preserve_env_instance_type"},
		{"timeout too short", deployments, newDep(dep("deploy_timeout_minutes", 5), nil), 400, "source.deployment.deploy_timeout_minutes: must be a whole number of minutes from 10 to 1440"},
		{"timeout too long", deployments, newDep(dep("deploy_timeout_minutes", 1441), nil), 400, "source.deployment.deploy_timeout_minutes"},
		{"timeout not a number", deployments, newDep(dep("deploy_timeout_minutes", "ten"), nil), 400, "source.deployment.deploy_timeout_minutes"},
		{"timeout not whole", deployments, newDep(dep("deploy_timeout_minutes", 10.5), nil), 400, "source.deployment.deploy_timeout_minutes"},
		{"labels not an object", deployments, newDep(dep("labels", "team=ml"), nil), 400, "source.deployment.labels: must be an object"},
		{"user_env not an object", deployments, newDep(dep("user_env", []any{1}), nil), 400, "source.deployment.user_env: must be an object"},
		{"raw_config not text", deployments, newDep(dep("raw_config", 3), nil), 400, "source.deployment.raw_config"},
		{"is_development not a bool", deployments, newDep(dep("is_development", "yes"), nil), 400, "source.deployment.is_development"},
		{"preserve not a bool", deployments, newDep(dep("preserve_env_instance_type", 1), nil), 400, "source.deployment.preserve_env_instance_type"},
		{"bad environment name", deployments, newDep(dep("environment_name", "Prod!"), nil), 400, "source.deployment.environment_name"},
		{"bad deployment name", deployments, newDep(dep("deployment_name", "a b"), nil), 400, "source.deployment.deployment_name"},
		{"unknown payload field", deployments, newDep(dep("colour", "red"), nil), 400, "source.deployment.colour: unknown field"},
		{"unknown payload field, null", deployments, newDep(dep("colour", nil), nil), 400, "source.deployment.colour: unknown field"},
		{"deployment not an object", deployments, newDep(map[string]any{"deployment": 1}, nil), 400, "source.deployment: must be an object"},
		{"unknown source field", deployments, newDep(map[string]any{"colour": "red"}, nil), 400, "source.colour: unknown field"},
		{"unknown top-level field", deployments, newDep(map[string]any{}, map[string]any{"colour": "red"}), 400, "colour: unknown field"},
		{"download lock on a deployment", deployments, newDep(map[string]any{"disable_archive_download": true}, nil), 400,
			"source.disable_archive_download: set when the model is created"},
		{"model name on a deployment", deployments, newDep(map[string]any{"name": "x"}, nil), 400, "source.name"},
		{"bad kind", deployments, newDep(map[string]any{"kind": "library_listing"}, nil), 400, "source.kind"},
		{"two archives", deployments, newDep(map[string]any{"archive_id": "sha256:" + strings.Repeat("0", 64)}, nil), 400,
			"name different archives"},
		{"no archive", deployments, map[string]any{"source": map[string]any{"deployment": map[string]any{}}}, 400, "source.s3_key: required"},
		{"unknown archive", deployments, map[string]any{"source": map[string]any{"s3_key": "sha256:" + strings.Repeat("0", 64)}}, 400,
			"source.s3_key: no archive"},
		{"unknown archive id", deployments, map[string]any{"source": map[string]any{"archive_id": "sha256:" + strings.Repeat("0", 64)}}, 400,
			"source.archive_id: no archive"},
		{"unknown upload key", deployments, map[string]any{"source": map[string]any{"s3_key": "upl_nosuchkey"}}, 400,
			`source.s3_key: no upload "upl_nosuchkey"`},
		{"new model without a name", models, newDep(map[string]any{}, nil), 400, "source.name: required"},
		{"new model to staging", models, newModel(dep("environment_name", "staging"), nil), 404, `environment "staging" not found`},
		{"deployment to a missing environment", deployments, newDep(dep("environment_name", "staging"), nil), 404, `environment "staging"`},
		{"download lock not a bool", models, newModel(map[string]any{"disable_archive_download": "yes"}, nil), 400, "source.disable_archive_download"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.send(t, http.MethodPost, tt.path, f.auth, jsonBody(t, tt.body))
			require.Equal(t, tt.want, r.Status, "%v", r.Body)
			require.Contains(t, message(r), tt.text)
		})
	}
	require.Empty(t, f.tc.startedWorkflows(), "a refused request starts nothing")
	f.requireNothingMade(t)
}

// deploymentBody is a create body with the fixture's archive as s3_key, the given source
// fields, and the given top-level fields.
func deploymentBody(f *createFixture, src map[string]any, top map[string]any) map[string]any {
	if _, ok := src["s3_key"]; !ok {
		src["s3_key"] = f.archive
	}
	body := map[string]any{"source": src}
	for k, v := range top {
		body[k] = v
	}
	return body
}

func TestCreate_NullsAndModelplanesEarlierSpellingsAreAccepted(t *testing.T) {
	f := newCreateFixture(t, 0)
	// Every nullable field null is every field left out.
	r := f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth, jsonBody(t, map[string]any{
		"source": map[string]any{"kind": "model_archive", "s3_key": f.archive, "archive_id": f.archive, "disable_archive_download": nil, "deployment": map[string]any{
			"config": configOf(t, greeterConfig), "raw_config": nil, "user_env": nil, "environment_name": nil,
			"deploy_timeout_minutes": nil, "deployment_name": nil, "labels": nil}}}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	_, id := ids(t, r)
	d := f.deployment(t, f.m.ID, id)
	require.Equal(t, "deployment-1", d.Name)
	require.Nil(t, d.DeployTimeoutMinutes)
	require.True(t, d.PreserveEnvInstanceType, "preserve_env_instance_type defaults to true")
	require.Equal(t, map[string]any{}, r.Body["deployment"].(map[string]any)["labels"])

	// modelplane's own body: archive_id, development and name, without config.
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth, jsonBody(t, map[string]any{
		"source": map[string]any{"kind": "model_archive", "archive_id": f.archive}, "development": true}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "development", r.Body["deployment"].(map[string]any)["name"])
	r = f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth, jsonBody(t, map[string]any{
		"source":      map[string]any{"archive_id": f.archive, "deployment": map[string]any{"name": "v2", "deployment_name": "v2"}},
		"environment": nil, "development": false}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "v2", r.Body["deployment"].(map[string]any)["name"])

	// Both spellings agreeing, straight to production: a promotion starts.
	r = f.send(t, http.MethodPost, "/v1/models", f.auth, jsonBody(t, map[string]any{
		"source":      map[string]any{"name": "greeter", "s3_key": f.archive, "archive_id": nil, "deployment": map[string]any{"environment_name": "production"}},
		"environment": "production"}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	modelID, depID := ids(t, r)
	require.Contains(t, f.tc.startedWorkflows(), contract.PromotionWorkflowID(modelID, "production"))
	require.False(t, f.deployment(t, modelID, depID).IsDevelopment)
}

func TestCreate_AnotherWorkspacesArchiveOrUploadIsRefused(t *testing.T) {
	f := newCreateFixture(t, 0)
	other, _, otherKey := f.workspace(t)
	// Workspace B uploads a package of its own, and prepares an upload.
	otherArchive := uploadOf(t, f, otherKey, packDir(t, map[string]string{"config.yaml": "model_name: other\n"}))
	prep := f.send(t, http.MethodPost, "/v1/prepare_model_upload", "Api-Key "+otherKey,
		`{"name": "other", "deployment": {"config": {"model_name": "other"}}}`)
	require.Equal(t, http.StatusOK, prep.Status, "%v", prep.Body)
	otherKeyName := prep.Body["s3_key"].(string)
	require.Equal(t, http.StatusOK, put(t, f, otherKey, otherKeyName, packDir(t, map[string]string{"config.yaml": "model_name: other2\n"})).Code)

	for _, src := range []map[string]any{
		{"s3_key": otherArchive}, {"archive_id": otherArchive}, {"s3_key": otherKeyName},
	} {
		r := f.send(t, http.MethodPost, "/v1/models/"+f.m.ID+"/deployments", f.auth, jsonBody(t, map[string]any{"source": src}))
		require.Equal(t, http.StatusBadRequest, r.Status, "%v: %v", src, r.Body)
		require.Contains(t, message(r), "in this workspace")
		src["name"] = "greeter"
		r = f.send(t, http.MethodPost, "/v1/models", f.auth, jsonBody(t, map[string]any{"source": src}))
		require.Equal(t, http.StatusBadRequest, r.Status, "%v: %v", src, r.Body)
	}
	// Nor may A upload to B's key.
	rec := put(t, f, f.key, otherKeyName, greeterPackage(t))
	require.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
	f.requireNothingMade(t)
	ds, err := store.ListDeployments(context.Background(), f.db, other.ID)
	require.NoError(t, err)
	require.Empty(t, ds)
}

func uploadOf(t *testing.T, f *createFixture, key string, pkg []byte) string {
	t.Helper()
	rec := upload(t, f.e, key, "application/gzip", pkg)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var a struct{ ID string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &a))
	return a.ID
}

// put uploads a package to a prepared key.
func put(t *testing.T, f *createFixture, key, uploadKey string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPut, api.UploadPath+uploadKey, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/gzip")
	req.Header.Set("Authorization", "Api-Key "+key)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec
}

func TestPrepareModelUpload_UploadThenCreateWithTheKey(t *testing.T) {
	f := newCreateFixture(t, 4096)
	payload := map[string]any{"config": configOf(t, greeterConfig), "raw_config": greeterConfig, "deployment_name": "first"}
	r := f.send(t, http.MethodPost, "/v1/prepare_model_upload", f.auth, jsonBody(t, map[string]any{
		"name": "greeter", "team_id": nil, "model_id": nil, "deployment": payload}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	key, _ := r.Body["s3_key"].(string)
	require.True(t, strings.HasPrefix(key, "upl_"), "s3_key %q", key)
	require.Equal(t, "http://example.com"+api.UploadPath+key, r.Body["upload_url"])
	for _, field := range []string{"creds", "s3_bucket", "s3_region"} {
		require.Contains(t, r.Body, field)
		require.Nil(t, r.Body[field], "%s is null: the archive goes to modelplane", field)
	}
	create := func() response {
		return f.send(t, http.MethodPost, "/v1/models", f.auth, jsonBody(t, map[string]any{"source": map[string]any{
			"kind": "model_archive", "name": "greeter", "s3_key": key, "deployment": payload}}))
	}

	// Before the upload the key names nothing.
	c := create()
	require.Equal(t, http.StatusConflict, c.Status, "%v", c.Body)
	require.Contains(t, message(c), "nothing was uploaded")

	// Refused uploads leave the key free.
	big := bytes.Repeat([]byte{0}, 5000)
	rec := put(t, f, f.key, key, big)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	rec = put(t, f, f.key, key, []byte("not a tar.gz"))
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	req := httptest.NewRequest(http.MethodPut, api.UploadPath+key, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", f.auth)
	rec = httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnsupportedMediaType, rec.Code)

	pkg := greeterPackage(t)
	rec = put(t, f, f.key, key, pkg)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var a struct {
		ID   string
		Size int
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &a))
	require.Equal(t, f.archive, a.ID, "the upload is stored as an archive, content-addressed")
	require.Equal(t, len(pkg), a.Size)

	rec = put(t, f, f.key, key, packDir(t, map[string]string{"config.yaml": "model_name: again\n"}))
	require.Equal(t, http.StatusConflict, rec.Code, "a key takes one upload: %s", rec.Body.String())
	rec = put(t, f, f.key, "upl_nosuchkey", pkg)
	require.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
	rec = put(t, f, "", key, pkg)
	require.Equal(t, http.StatusUnauthorized, rec.Code, "an upload needs the API key")

	c = create()
	require.Equal(t, http.StatusOK, c.Status, "%v", c.Body)
	modelID, depID := ids(t, c)
	d := f.deployment(t, modelID, depID)
	require.Equal(t, f.archive, *d.ArchiveID)
	require.Equal(t, "first", d.Name)

	// A dry run checks and hands out nothing.
	r = f.send(t, http.MethodPost, "/v1/prepare_model_upload", f.auth, jsonBody(t, map[string]any{
		"model_id": modelID, "dry_run": true, "deployment": map[string]any{"config": configOf(t, greeterConfig)}}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, map[string]any{"creds": nil, "s3_bucket": nil, "s3_key": nil, "s3_region": nil, "upload_url": nil}, r.Body)
}

func TestPrepareModelUpload_ChecksThePayloadAsAPushWould(t *testing.T) {
	f := newCreateFixture(t, 0)
	otherModel, _, _ := f.workspace(t)
	ok := map[string]any{"config": configOf(t, greeterConfig)}
	f.createDeploymentNamed(t, "first")
	for _, tt := range []struct {
		name string
		body map[string]any
		want int
		text string
	}{
		{"no deployment", map[string]any{"name": "greeter"}, 400, "deployment: required"},
		{"name and model_id", map[string]any{"name": "greeter", "model_id": f.m.ID, "deployment": ok}, 400, "send exactly one"},
		{"neither name nor model_id", map[string]any{"deployment": ok}, 400, "one is required"},
		{"bad model name", map[string]any{"name": "a\nb", "deployment": ok}, 400, "name: must be printable"},
		{"unknown model", map[string]any{"model_id": "zzzzzzzz", "deployment": ok}, 404, `model "zzzzzzzz" not found`},
		{"another workspace's model", map[string]any{"model_id": otherModel.ID, "deployment": ok}, 404, "not found"},
		{"team with model_id", map[string]any{"model_id": f.m.ID, "team_id": "t", "deployment": ok}, 400, "team_id: must not be set with model_id"},
		{"unknown team", map[string]any{"name": "greeter", "team_id": "elsewhere", "deployment": ok}, 404, `team "elsewhere" not found`},
		{"bad config", map[string]any{"name": "greeter", "deployment": map[string]any{
			"config": map[string]any{"model_name": "g", "resources": map[string]any{"accelerator": "H100:99"}}}}, 400,
			"deployment.config.resources.accelerator"},
		{"new model to staging", map[string]any{"name": "greeter", "deployment": map[string]any{"environment_name": "staging"}}, 404,
			`environment "staging" not found`},
		{"missing environment", map[string]any{"model_id": f.m.ID, "deployment": map[string]any{"environment_name": "staging"}}, 404,
			`environment "staging"`},
		{"deployment name taken", map[string]any{"model_id": f.m.ID, "deployment": map[string]any{"deployment_name": "first"}}, 409,
			`already has a deployment named "first"`},
		{"development to an environment", map[string]any{"name": "greeter", "deployment": map[string]any{
			"is_development": true, "environment_name": "production"}}, 400, "deployment.environment_name"},
		{"timeout out of bounds", map[string]any{"name": "greeter", "deployment": map[string]any{"deploy_timeout_minutes": 0}}, 400,
			"deployment.deploy_timeout_minutes"},
		{"unknown field", map[string]any{"name": "greeter", "deployment": ok, "bucket": "b"}, 400, "bucket: unknown field"},
		{"dry_run not a bool", map[string]any{"name": "greeter", "deployment": ok, "dry_run": "yes"}, 400, "dry_run"},
		{"model_id not a string", map[string]any{"model_id": 7, "deployment": ok}, 400, "model_id: must be a string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.send(t, http.MethodPost, "/v1/prepare_model_upload", f.auth, jsonBody(t, tt.body))
			require.Equal(t, tt.want, r.Status, "%v", r.Body)
			require.Contains(t, message(r), tt.text)
		})
	}
	var n int
	require.NoError(t, f.db.Get(&n, `SELECT count(*) FROM archive_uploads WHERE workspace_id = $1`, f.m.WorkspaceID))
	require.Zero(t, n, "a refused prepare hands out no key")

	// The workspace is the one team there is, by ID or by name.
	ws, err := store.WorkspaceByID(context.Background(), f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	for _, team := range []string{ws.ID, ws.Name} {
		r := f.send(t, http.MethodPost, "/v1/prepare_model_upload", f.auth, jsonBody(t, map[string]any{
			"name": "greeter", "team_id": team, "dry_run": true, "deployment": ok}))
		require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	}
}

// createDeploymentNamed adds a deployment of the greeter package with the given name.
func (f *createFixture) createDeploymentNamed(t *testing.T, name string) string {
	t.Helper()
	return f.createDeployment(t, map[string]any{"deployment_name": name})
}
