package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

func (f *fixture) send(t *testing.T, method, path, auth, body string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	var out map[string]any
	if rec.Body.Len() > 0 {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	}
	return response{Status: rec.Code, Body: out, Header: rec.Header()}
}

func message(r response) string {
	if e, ok := r.Body["error"].(map[string]any); ok {
		s, _ := e["message"].(string)
		return s
	}
	return ""
}

func TestEnvironments_CreateWithSettingsAndRefuseBadInput(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	path := "/v1/models/" + m.ID + "/environments"

	r := f.send(t, http.MethodPost, path, auth, `{"name": "staging", "autoscaling_settings": {"max_replica": 4}, "promotion_settings": {"canary_analysis": {"enabled": true}}}`)
	require.Equal(t, http.StatusOK, r.Status, "the spec answers 200 with the environment: %v", r.Body)
	require.Equal(t, "staging", r.Body["name"])
	as := r.Body["autoscaling_settings"].(map[string]any)
	require.EqualValues(t, 4, as["max_replica"])
	require.EqualValues(t, 60, as["autoscaling_window"], "unset fields take their defaults")
	ca := r.Body["promotion_settings"].(map[string]any)["canary_analysis"].(map[string]any)
	require.Equal(t, true, ca["enabled"])
	require.EqualValues(t, 20, ca["min_requests_per_stage"])

	tests := []struct {
		name, body string
		want       int
		wantText   string
	}{
		{"same name again", `{"name": "staging"}`, http.StatusConflict, "already exists"},
		{"production", `{"name": "production"}`, http.StatusUnprocessableEntity, "production"},
		{"no name", `{}`, http.StatusBadRequest, "name: required"},
		{"bad name", `{"name": "Stage 1"}`, http.StatusBadRequest, "name:"},
		{"name not a string", `{"name": 7}`, http.StatusBadRequest, "name: must be a string"},
		{"unknown field", `{"name": "qa", "colour": "blue"}`, http.StatusBadRequest, "colour: unknown field"},
		{"out of range", `{"name": "qa", "autoscaling_settings": {"autoscaling_window": 5}}`, http.StatusBadRequest, "autoscaling_settings.autoscaling_window"},
		{"wrong type", `{"name": "qa", "promotion_settings": {"ramp_up_while_promoting": "yes"}}`, http.StatusBadRequest, "promotion_settings.ramp_up_while_promoting"},
		{"bad strategy", `{"name": "qa", "promotion_settings": {"promotion_cleanup_strategy": "EXPLODE"}}`, http.StatusBadRequest, "promotion_cleanup_strategy"},
		{"not JSON", `{"name": `, http.StatusBadRequest, "JSON object"},
		{"null body", `null`, http.StatusBadRequest, "JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.send(t, http.MethodPost, path, auth, tt.body)
			require.Equal(t, tt.want, r.Status, "%v", r.Body)
			require.Contains(t, message(r), tt.wantText)
		})
	}
	_, err := store.EnvironmentByName(context.Background(), f.db, m.ID, "qa")
	require.ErrorIs(t, err, store.ErrNotFound, "no refused request may create anything")

	_, _, other := f.workspace(t)
	require.Equal(t, http.StatusNotFound, f.send(t, http.MethodPost, path, "Api-Key "+other, `{"name": "x"}`).Status)
}

func TestEnvironments_PatchChangesOnlyWhatIsSent(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	path := "/v1/models/" + m.ID + "/environments/production"

	r := f.send(t, http.MethodPatch, path, auth, `{"autoscaling_settings": {"min_replica": 1, "max_replica": 3}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	r = f.send(t, http.MethodPatch, path, auth, `{"promotion_settings": {"ramp_up_while_promoting": true, "ramp_up_duration_seconds": 60}}`)
	require.Equal(t, http.StatusOK, r.Status)
	env := r.Body["environment"].(map[string]any)
	as := env["autoscaling_settings"].(map[string]any)
	require.EqualValues(t, 1, as["min_replica"], "the earlier patch is kept")
	require.EqualValues(t, 3, as["max_replica"])
	require.EqualValues(t, 60, env["promotion_settings"].(map[string]any)["ramp_up_duration_seconds"])

	bad := f.send(t, http.MethodPatch, path, auth, `{"autoscaling_settings": {"max_replica": 0}}`)
	require.Equal(t, http.StatusBadRequest, bad.Status)
	require.Contains(t, message(bad), "autoscaling_settings.max_replica")
	e, err := store.EnvironmentByName(context.Background(), f.db, m.ID, "production")
	require.NoError(t, err)
	require.Equal(t, 3, e.AutoscalingSettings.MaxReplica, "a refused patch changes nothing")

	require.Equal(t, http.StatusNotFound, f.send(t, http.MethodPatch, "/v1/models/"+m.ID+"/environments/nope", auth, `{}`).Status)
	require.Equal(t, http.StatusBadRequest, f.send(t, http.MethodPatch, path, auth, `{"name": "prod"}`).Status, "an environment cannot be renamed")
}

func TestDeployments_RenameRules(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	ctx := context.Background()
	a, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	_, err = store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, Name: "taken"})
	require.NoError(t, err)
	dev, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, IsDevelopment: true})
	require.NoError(t, err)
	base := "/v1/models/" + m.ID + "/deployments/"

	r := f.send(t, http.MethodPatch, base+a.ID, auth, `{"name": "v1.0-rc_1"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "v1.0-rc_1", r.Body["name"])
	for _, tt := range []struct {
		path, body string
		want       int
	}{
		{base + a.ID, `{"name": "taken"}`, http.StatusConflict},
		{base + dev.ID, `{"name": "dev2"}`, http.StatusUnprocessableEntity},
		{base + "development", `{"name": "dev2"}`, http.StatusUnprocessableEntity},
		{base + a.ID, `{"name": "has space"}`, http.StatusBadRequest},
		{base + a.ID, `{"name": "` + strings.Repeat("x", 256) + `"}`, http.StatusBadRequest},
		{base + a.ID, `{"name": 5}`, http.StatusBadRequest},
		{base + a.ID, `{"name": ""}`, http.StatusBadRequest},
		{base + a.ID, `{"title": "x"}`, http.StatusBadRequest},
		// The spec's name is nullable, default null: nothing to change.
		{base + a.ID, `{}`, http.StatusOK},
		{base + a.ID, `{"name": null}`, http.StatusOK},
		{base + dev.ID, `{"name": null}`, http.StatusOK},
		{base + "zzzzzzzz", `{"name": "x"}`, http.StatusNotFound},
	} {
		require.Equal(t, tt.want, f.send(t, http.MethodPatch, tt.path, auth, tt.body).Status, "%s %s", tt.path, tt.body)
	}
	got := f.send(t, http.MethodPatch, base+a.ID, auth, `{"name": null}`)
	require.Equal(t, "v1.0-rc_1", got.Body["name"], "a null name leaves the name as it is")
}

func TestDeployments_AutoscalingPatchAcceptedThenUnchanged(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	_, err = store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, IsDevelopment: true,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	path := "/v1/models/" + m.ID + "/deployments/" + d.ID + "/autoscaling_settings"

	r := f.send(t, http.MethodPatch, path, auth, `{"max_replica": 5, "concurrency_target": 4}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "ACCEPTED", r.Body["status"])
	r = f.send(t, http.MethodPatch, path, auth, `{"max_replica": 5}`)
	require.Equal(t, "UNCHANGED", r.Body["status"])
	got, err := store.DeploymentByID(ctx, f.db, m.ID, d.ID)
	require.NoError(t, err)
	require.Equal(t, 5, got.AutoscalingSettings.MaxReplica)
	require.Equal(t, 4, got.AutoscalingSettings.ConcurrencyTarget)

	for _, tt := range []struct{ path, body, wantText string }{
		{path, `{"target_utilization_percentage": 101}`, "target_utilization_percentage"},
		{path, `{"min_replica": 6}`, "max_replica"},
		{path, `{"max_scale_down_rate": 51}`, "max_scale_down_rate"},
		{path, `{"scale_down_delay": -1}`, "scale_down_delay"},
		{path, `{"bogus": 1}`, "bogus"},
		{"/v1/models/" + m.ID + "/deployments/development/autoscaling_settings", `{"max_replica": 2}`, "development"},
	} {
		r := f.send(t, http.MethodPatch, tt.path, auth, tt.body)
		require.Equal(t, http.StatusBadRequest, r.Status, tt.body)
		require.Contains(t, message(r), tt.wantText)
	}
}

func TestAuditLog_RecordsWhoDidWhat(t *testing.T) {
	f := newFixture(t)
	m, k, key := f.workspace(t)
	auth := "Api-Key " + key
	require.Equal(t, http.StatusOK, f.send(t, http.MethodPost, "/v1/models/"+m.ID+"/environments", auth, `{"name": "staging"}`).Status)
	require.Equal(t, http.StatusOK, f.send(t, http.MethodPatch, "/v1/models/"+m.ID+"/environments/staging", auth, `{"autoscaling_settings": {"max_replica": 2}}`).Status)
	// A refused request leaves no trace.
	require.Equal(t, http.StatusBadRequest, f.send(t, http.MethodPatch, "/v1/models/"+m.ID+"/environments/staging", auth, `{"autoscaling_settings": {"max_replica": 0}}`).Status)

	r := f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/audit_logs", auth)
	require.Equal(t, http.StatusOK, r.Status)
	logs := r.Body["items"].([]any)
	require.Len(t, logs, 2)
	newest := logs[0].(map[string]any)
	require.Equal(t, "ENVIRONMENT_UPDATED", newest["event_type"])
	require.Equal(t, "staging", newest["event_data"].(map[string]any)["environment_name"])
	require.Equal(t, k.ID, newest["actor"].(map[string]any)["api_key_prefix"], "the actor is the key that made the change")
	require.Equal(t, "ENVIRONMENT_CREATED", logs[1].(map[string]any)["event_type"])
}
