package api_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// auditEventData lists, for each event type modelplane records, the fields of its
// event_data in Baseten's spec: all of them required, and no others allowed.
var auditEventData = map[string][]string{
	"MODEL_DEPLOYED": {"event_type", "model_id", "model_name", "deployment_id", "deployment_name",
		"scale_previous_to_zero", "trusted", "publish", "environment_name"},
	"MODEL_DEPLOYMENT_ACTIVATED":   {"event_type", "model_id", "model_name", "deployment_id", "deployment_name"},
	"MODEL_DEPLOYMENT_DEACTIVATED": {"event_type", "model_id", "model_name", "deployment_id", "deployment_name"},
	"MODEL_DEPLOYMENT_DELETED":     {"event_type", "model_id", "model_name", "deployment_id", "deployment_name"},
	"MODEL_DELETED":                {"event_type", "model_id", "model_name"},
	"MODEL_DEPLOYMENT_AUTOSCALING_SETTINGS_CHANGED": {"schedules", "min_replica", "max_replica",
		"concurrency_target", "autoscaling_window", "scale_down_delay", "target_utilization_percentage",
		"target_in_flight_tokens", "max_scale_down_rate", "event_type", "model_id", "model_name", "deployment_id",
		"deployment_name", "deployment_type", "previous_settings"},
	"MODEL_DEPLOYMENT_PROMOTED": {"event_type", "model_id", "model_name", "deployment_id", "deployment_name",
		"environment_name", "environment_id"},
	"ENVIRONMENT_CREATED": environmentEventData,
	"ENVIRONMENT_UPDATED": append(slices.Clone(environmentEventData), "schedules", "previous_settings"),
	"ENVIRONMENT_DELETED": {"event_type", "model_id", "model_name", "environment_name"},
	"API_KEY_CREATED":     {"event_type", "api_key_id", "api_key_type", "prefix"},
	"API_KEY_DELETED":     {"event_type", "api_key_id", "api_key_type", "prefix"},
	"MODEL_PROMOTION_CONTROL_ACTION": {"event_type", "model_id", "model_name", "deployment_id", "deployment_name",
		"environment_name", "environment_id", "action"},
	"MODEL_DEPLOYMENT_RETRIED": {"event_type", "model_id", "model_name", "deployment_id", "deployment_name", "retried"},
	"MODEL_DEPLOYMENT_REQUEST_BACKPRESSURE_SETTINGS_CHANGED": {"event_type", "model_id", "model_name", "deployment_id",
		"deployment_name", "policy", "previous_policy"},
	"REPLICA_TERMINATED": {"event_type", "model_id", "model_name", "deployment_id", "deployment_name", "replica_id"},
}

var environmentEventData = []string{"min_replica", "max_replica", "concurrency_target", "autoscaling_window",
	"scale_down_delay", "target_utilization_percentage", "target_in_flight_tokens", "max_scale_down_rate",
	"redeploy_on_promotion", "rolling_deploy", "rolling_deploy_strategy", "max_unavailable_percent",
	"max_surge_percent", "stabilization_time_seconds", "replica_overhead_percent", "promotion_cleanup_strategy",
	"ramp_up_while_promoting", "ramp_up_duration_seconds", "ramp_up_step_size", "model_id", "model_name",
	"environment_name", "deployment_type", "event_type"}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// auditWorkspace is a workspace with an admin key, a model "echo" with a production
// deployment, and the audit events the tests read.
type auditWorkspace struct {
	ws         store.Workspace
	admin      store.APIKey
	auth       string
	model      store.Model
	deployment store.Deployment
	deleted    string // the ID of a model that was deleted
	keyID      string // the ID of a key made and deleted through the API
}

// newAuditWorkspace records events through the API where they need no workflow, and
// directly where they do, oldest first: ENVIRONMENT_CREATED, ENVIRONMENT_UPDATED,
// MODEL_DEPLOYMENT_AUTOSCALING_SETTINGS_CHANGED, (a rename, not listed), API_KEY_CREATED,
// API_KEY_DELETED, MODEL_DEPLOYED, MODEL_DEPLOYMENT_DEACTIVATED, MODEL_DEPLOYMENT_PROMOTED,
// MODEL_PROMOTION_CONTROL_ACTION (and the workflow's own record of it, not listed),
// ENVIRONMENT_DELETED, MODEL_DELETED.
func newAuditWorkspace(t *testing.T, f *fixture) auditWorkspace {
	t.Helper()
	ctx := context.Background()
	var w auditWorkspace
	var text string
	w.ws, w.admin, text = adminWorkspace(t, f)
	w.auth = "Api-Key " + text
	var err error
	w.model, err = store.CreateModel(ctx, f.db, w.ws.ID, "echo")
	require.NoError(t, err)
	w.deployment, err = store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: w.model.ID, WorkspaceID: w.ws.ID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, w.model.ID, modelplane.ProductionEnvironment, w.deployment.ID))

	models := "/v1/models/" + w.model.ID
	for _, call := range []struct{ method, path, body string }{
		{http.MethodPost, models + "/environments", `{"name": "staging", "autoscaling_settings": {"max_replica": 4}}`},
		{http.MethodPatch, models + "/environments/staging", `{"promotion_settings": {"ramp_up_while_promoting": true}}`},
		{http.MethodPatch, models + "/deployments/" + w.deployment.ID + "/autoscaling_settings", `{"max_replica": 2}`},
		{http.MethodPatch, models + "/deployments/" + w.deployment.ID, `{"name": "renamed"}`},
	} {
		r := f.send(t, call.method, call.path, w.auth, call.body)
		require.Less(t, r.Status, 300, "%s %s: %v", call.method, call.path, r.Body)
	}
	r := f.send(t, http.MethodPost, "/v1/api_keys", w.auth, `{"type": "PERSONAL", "name": "temp"}`)
	require.Equal(t, http.StatusOK, r.Status)
	w.keyID = strings.Split(r.Body["api_key"].(string), "_")[1]
	require.Equal(t, http.StatusOK, f.do(t, http.MethodDelete, "/v1/api_keys/"+w.keyID, w.auth).Status)

	record := func(modelID, actor, action, target string, details store.JSONMap) {
		require.NoError(t, store.RecordAudit(ctx, f.db, store.AuditEvent{WorkspaceID: w.ws.ID, ModelID: modelID,
			Actor: actor, Action: action, Target: target, Details: details}))
	}
	record(w.model.ID, w.admin.ID, "model.create", w.model.ID, store.JSONMap{"deployment_id": w.deployment.ID})
	record(w.model.ID, w.admin.ID, "deployment.deactivate", w.deployment.ID, nil)
	record(w.model.ID, w.admin.ID, "promotion.start", "staging", store.JSONMap{"deployment_id": w.deployment.ID})
	record(w.model.ID, w.admin.ID, "promotion.pause", "staging", store.JSONMap{"deployment_id": w.deployment.ID})
	record(w.model.ID, "promotion:abcd1234", "promotion.pause", "staging", nil)
	record(w.model.ID, "promotion:abcd1234", "promotion.stage", "staging", nil)
	record(w.model.ID, w.admin.ID, "environment.delete", "staging", nil)

	gone, err := store.CreateModel(ctx, f.db, w.ws.ID, "gone")
	require.NoError(t, err)
	w.deleted = gone.ID
	record(gone.ID, w.admin.ID, "model.delete", gone.ID, store.JSONMap{"model_name": "gone"})
	require.NoError(t, store.DeleteModel(ctx, f.db, w.ws.ID, gone.ID))
	return w
}

// auditPage reads one page of the workspace's audit log.
func auditPage(t *testing.T, f *fixture, auth string, query url.Values) (items []map[string]any, pagination map[string]any) {
	t.Helper()
	r := f.do(t, http.MethodGet, "/v1/audit_logs?"+query.Encode(), auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, []string{"items", "pagination"}, sortedKeys(r.Body))
	for _, it := range r.Body["items"].([]any) {
		items = append(items, it.(map[string]any))
	}
	return items, r.Body["pagination"].(map[string]any)
}

func eventTypes(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		out = append(out, it["event_type"].(string))
	}
	return out
}

func TestAuditLogs_ListsTheWorkspacesEventsInBasetensShape(t *testing.T) {
	f := newFixture(t)
	w := newAuditWorkspace(t, f)
	items, pagination := auditPage(t, f, w.auth, url.Values{"limit": {"200"}})
	require.Equal(t, map[string]any{"has_more": false, "cursor": nil}, pagination)
	require.Equal(t, []string{"MODEL_DELETED", "ENVIRONMENT_DELETED", "MODEL_PROMOTION_CONTROL_ACTION",
		"MODEL_DEPLOYMENT_PROMOTED", "MODEL_DEPLOYMENT_DEACTIVATED", "MODEL_DEPLOYED", "API_KEY_DELETED",
		"API_KEY_CREATED", "MODEL_DEPLOYMENT_AUTOSCALING_SETTINGS_CHANGED", "ENVIRONMENT_UPDATED",
		"ENVIRONMENT_CREATED"}, eventTypes(items), "newest first; the rename and the workflow's own records are left out")

	var last time.Time
	for i, it := range items {
		typ := it["event_type"].(string)
		require.ElementsMatch(t, []string{"actor", "client_name", "client_version", "client_session_id", "created",
			"event_data", "event_type", "id", "source"}, sortedKeys(it), typ)
		_, err := strconv.ParseInt(it["id"].(string), 10, 64)
		require.NoError(t, err, "id is a string")
		created, err := time.Parse(time.RFC3339Nano, it["created"].(string))
		require.NoError(t, err)
		if i > 0 {
			require.False(t, created.After(last), "entries are newest first")
		}
		last = created
		require.Equal(t, "API", it["source"])
		actor := it["actor"].(map[string]any)
		require.Equal(t, "API_KEY", actor["type"])
		require.Equal(t, w.admin.ID, actor["api_key_prefix"])
		require.Equal(t, "first admin", actor["api_key_name"])
		data := it["event_data"].(map[string]any)
		require.ElementsMatch(t, auditEventData[typ], sortedKeys(data), "event_data of %s", typ)
		require.Equal(t, typ, data["event_type"])
		requireSpecShape(t, "AuditLogEntryV1", it)
	}
	byType := map[string]map[string]any{}
	for _, it := range items {
		byType[it["event_type"].(string)] = it["event_data"].(map[string]any)
	}
	deployed := byType["MODEL_DEPLOYED"]
	require.Equal(t, w.model.ID, deployed["model_id"])
	require.Equal(t, "echo", deployed["model_name"])
	require.Equal(t, w.deployment.ID, deployed["deployment_id"])
	require.Equal(t, "renamed", deployed["deployment_name"], "names are as they are now")
	require.Equal(t, true, deployed["publish"])
	require.Equal(t, w.deployment.ID, byType["MODEL_DEPLOYMENT_DEACTIVATED"]["deployment_id"])
	require.Equal(t, "staging", byType["MODEL_DEPLOYMENT_PROMOTED"]["environment_name"])
	control := byType["MODEL_PROMOTION_CONTROL_ACTION"]
	require.Equal(t, "PAUSE", control["action"])
	require.Equal(t, "staging", control["environment_name"])
	require.Equal(t, w.deployment.ID, control["deployment_id"])
	as := byType["MODEL_DEPLOYMENT_AUTOSCALING_SETTINGS_CHANGED"]
	require.EqualValues(t, 2, as["max_replica"])
	require.Nil(t, as["previous_settings"])
	created := byType["ENVIRONMENT_CREATED"]
	require.Equal(t, "staging", created["environment_name"])
	require.EqualValues(t, 4, created["max_replica"], "the settings it was created with")
	require.Equal(t, "SCALE_TO_ZERO", created["promotion_cleanup_strategy"])
	require.Equal(t, true, byType["ENVIRONMENT_UPDATED"]["ramp_up_while_promoting"])
	require.Equal(t, map[string]any{"event_type": "API_KEY_CREATED", "api_key_id": w.keyID,
		"api_key_type": "PERSONAL", "prefix": w.keyID}, byType["API_KEY_CREATED"])
	require.Equal(t, map[string]any{"event_type": "MODEL_DELETED", "model_id": w.deleted, "model_name": "gone"},
		byType["MODEL_DELETED"], "a deleted model keeps its name in the log")

	// Another workspace sees none of it.
	_, _, other := f.workspace(t)
	items, _ = auditPage(t, f, "Api-Key "+other, url.Values{})
	require.Empty(t, items)
}

func TestAuditLogs_CursorPagesThroughEveryEntryOnce(t *testing.T) {
	f := newFixture(t)
	w := newAuditWorkspace(t, f)
	all, _ := auditPage(t, f, w.auth, url.Values{"limit": {"200"}})
	ids := func(items []map[string]any) []string {
		var out []string
		for _, it := range items {
			out = append(out, it["id"].(string))
		}
		return out
	}
	for _, dir := range []string{"DESC", "ASC"} {
		var seen []string
		q := url.Values{"limit": {"3"}, "direction": {dir}}
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10, "paging does not end")
			items, p := auditPage(t, f, w.auth, q)
			require.LessOrEqual(t, len(items), 3)
			seen = append(seen, ids(items)...)
			if p["has_more"] == false {
				require.Nil(t, p["cursor"])
				break
			}
			require.NotEmpty(t, p["cursor"])
			// The cursor keeps the page's order whatever direction says.
			q = url.Values{"limit": {"3"}, "cursor": {p["cursor"].(string)}, "direction": {"DESC"}}
		}
		want := ids(all)
		if dir == "ASC" {
			slices.Reverse(want)
		}
		require.Equal(t, want, seen, "direction %s", dir)
	}
	items, _ := auditPage(t, f, w.auth, url.Values{})
	require.Len(t, items, len(all), "20 by default, more than there are")
}

func TestAuditLogs_FiltersNarrowTheEntries(t *testing.T) {
	f := newFixture(t)
	w := newAuditWorkspace(t, f)
	all, _ := auditPage(t, f, w.auth, url.Values{"limit": {"200"}})
	mid, err := time.Parse(time.RFC3339Nano, all[5]["created"].(string)) // MODEL_DEPLOYED
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		query url.Values
		want  []string
	}{
		{"event type groups", url.Values{"event_type_groups": {"API_KEYS", "DELETED"}},
			[]string{"MODEL_DELETED", "API_KEY_DELETED", "API_KEY_CREATED"}},
		{"groups comma-separated", url.Values{"event_type_groups": {"ACTIVATED_DEACTIVATED,PROMOTED"}},
			[]string{"MODEL_PROMOTION_CONTROL_ACTION", "MODEL_DEPLOYMENT_PROMOTED", "MODEL_DEPLOYMENT_DEACTIVATED"}},
		{"deployment", url.Values{"deployment_ids": {w.deployment.ID}},
			[]string{"MODEL_PROMOTION_CONTROL_ACTION", "MODEL_DEPLOYMENT_PROMOTED", "MODEL_DEPLOYMENT_DEACTIVATED",
				"MODEL_DEPLOYED", "MODEL_DEPLOYMENT_AUTOSCALING_SETTINGS_CHANGED"}},
		{"environment", url.Values{"environment_names": {"staging"}},
			[]string{"ENVIRONMENT_DELETED", "MODEL_PROMOTION_CONTROL_ACTION", "MODEL_DEPLOYMENT_PROMOTED",
				"ENVIRONMENT_UPDATED", "ENVIRONMENT_CREATED"}},
		{"search a model's name, in any case", url.Values{"search": {"GON"}}, []string{"MODEL_DELETED"}},
		{"search a deployment's name", url.Values{"search": {"renamed"}, "event_type_groups": {"DEPLOYED"}},
			[]string{"MODEL_DEPLOYED"}},
		{"search matches % literally", url.Values{"search": {"%"}}, nil},
		{"acting key", url.Values{"user_ids": {w.admin.ID}, "limit": {"1"}}, []string{"MODEL_DELETED"}},
		{"another actor", url.Values{"user_ids": {"nobody000000"}}, nil},
		{"sources API", url.Values{"sources": {"API"}, "event_type_groups": {"API_KEYS"}},
			[]string{"API_KEY_DELETED", "API_KEY_CREATED"}},
		{"sources UI", url.Values{"sources": {"UI"}}, nil},
		{"chains", url.Values{"chain_deployment_ids": {"abc"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, _ := auditPage(t, f, w.auth, tc.query)
			require.Equal(t, tc.want, eventTypes(items))
		})
	}

	// The window is in milliseconds, both ends inclusive; events may share a millisecond.
	ms := mid.UnixMilli()
	var from, until []string
	for _, it := range all {
		created, err := time.Parse(time.RFC3339Nano, it["created"].(string))
		require.NoError(t, err)
		if !created.Before(time.UnixMilli(ms)) {
			from = append(from, it["event_type"].(string))
		}
		if !created.After(time.UnixMilli(ms - 1)) {
			until = append(until, it["event_type"].(string))
		}
	}
	require.Contains(t, from, "MODEL_DEPLOYED")
	require.Contains(t, until, "ENVIRONMENT_CREATED")
	items, _ := auditPage(t, f, w.auth, url.Values{"start_epoch_millis": {strconv.FormatInt(ms, 10)}, "limit": {"200"}})
	require.Equal(t, from, eventTypes(items))
	items, _ = auditPage(t, f, w.auth, url.Values{"end_epoch_millis": {strconv.FormatInt(ms-1, 10)}, "limit": {"200"}})
	require.Equal(t, until, eventTypes(items))
}

func TestAuditLogs_BadParametersAre400NamingThem(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	for query, field := range map[string]string{
		"limit=0":                      "limit",
		"limit=201":                    "limit",
		"limit=ten":                    "limit",
		"cursor=not-a-cursor":          "cursor",
		"cursor=djEuZC4xLjA":           "cursor", // well encoded, but no ID
		"direction=UP":                 "direction",
		"event_type_groups=NOPE":       "event_type_groups",
		"sources=EMAIL":                "sources",
		"start_epoch_millis=yesterday": "start_epoch_millis",
		"end_epoch_millis=-5":          "end_epoch_millis",
		"start_epoch_millis=2000&end_epoch_millis=1000": "start_epoch_millis",
	} {
		r := f.do(t, http.MethodGet, "/v1/audit_logs?"+query, "Api-Key "+key)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %v", query, r.Body)
		_, msg := errorCode(t, r)
		require.True(t, strings.HasPrefix(msg, field+":"), "%s: %q should name %s", query, msg, field)
	}
	require.Equal(t, http.StatusUnauthorized, f.do(t, http.MethodGet, "/v1/audit_logs", "").Status)
}

// specFile is Baseten's OpenAPI spec, which the conformance suite validates against too.
const specFile = "../e2e/testdata/baseten-openapi.json"

var (
	specOnce sync.Once
	specDoc  *openapi3.T
	specErr  error
)

// specSchema is the spec's component schema of that name.
func specSchema(t *testing.T, name string) *openapi3.Schema {
	t.Helper()
	specOnce.Do(func() { specDoc, specErr = openapi3.NewLoader().LoadFromFile(specFile) })
	require.NoError(t, specErr, "loading %s", specFile)
	ref, ok := specDoc.Components.Schemas[name]
	require.True(t, ok, "the spec has no schema %s", name)
	return ref.Value
}

// requireSpecShape fails unless v (a decoded JSON body) is valid under the spec's schema.
func requireSpecShape(t *testing.T, schema string, v any) {
	t.Helper()
	require.NoError(t, specSchema(t, schema).VisitJSON(v, openapi3.MultiErrors()), "%s: %v", schema, v)
}

func TestAuditLogs_ListRetryBackpressureAndReplicaTerminations(t *testing.T) {
	f := newRoutesFixture(t)
	dep := f.base + "/deployments/" + f.prod.ID
	for _, body := range []string{`{"policy": "QUEUE_ON_FULL"}`, `{"policy": "REJECT_ON_FULL"}`, `{"policy": null}`} {
		r := f.send(t, http.MethodPatch, dep+"/request_backpressure_settings", f.auth, body)
		require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	}
	f.setStatus(t, f.prod.ID, modelplane.DeploymentDeployFailed)
	r := f.send(t, http.MethodPost, dep+"/retry", f.auth, "")
	require.Equal(t, true, r.Body["retried"], "%v", r.Body)
	f.setStatus(t, f.prod.ID, modelplane.DeploymentActive)
	r = f.send(t, http.MethodPost, dep+"/retry", f.auth, "")
	require.Equal(t, false, r.Body["retried"], "%v", r.Body)
	_, nodeID := f.agentNode(t)
	replica := f.newReplica(t, f.prod.ID, nodeID, modelplane.ReplicaReady)
	r = f.send(t, http.MethodDelete, dep+"/replicas/"+replica, f.auth, "")
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	// Neither a rename nor a download has a type in the spec.
	require.Equal(t, http.StatusOK, f.send(t, http.MethodPatch, dep, f.auth, `{"name": "renamed"}`).Status)
	require.NoError(t, store.RecordAudit(context.Background(), f.db, store.AuditEvent{WorkspaceID: f.m.WorkspaceID,
		ModelID: f.m.ID, Actor: strings.Split(strings.TrimPrefix(f.auth, "Api-Key "), "_")[1],
		Action: "deployment.download", Target: f.prod.ID}))

	want := []string{"REPLICA_TERMINATED", "MODEL_DEPLOYMENT_RETRIED",
		"MODEL_DEPLOYMENT_REQUEST_BACKPRESSURE_SETTINGS_CHANGED",
		"MODEL_DEPLOYMENT_REQUEST_BACKPRESSURE_SETTINGS_CHANGED",
		"MODEL_DEPLOYMENT_REQUEST_BACKPRESSURE_SETTINGS_CHANGED"}
	for _, route := range []string{"/v1/audit_logs", f.base + "/audit_logs"} {
		got := f.do(t, http.MethodGet, route, f.auth)
		require.Equal(t, http.StatusOK, got.Status, "%v", got.Body)
		requireSpecShape(t, "ListAuditLogsResponseV1", got.Body)
		var items []map[string]any
		for _, it := range got.Body["items"].([]any) {
			items = append(items, it.(map[string]any))
		}
		require.Equal(t, want, eventTypes(items), "%s: a refused retry, the rename and the download are left out", route)
		for _, it := range items {
			data := it["event_data"].(map[string]any)
			typ := it["event_type"].(string)
			require.ElementsMatch(t, auditEventData[typ], sortedKeys(data), "event_data of %s", typ)
			requireSpecShape(t, "AuditLogEntryV1", it)
			require.Equal(t, f.m.ID, data["model_id"])
			require.Equal(t, f.m.Name, data["model_name"])
			require.Equal(t, f.prod.ID, data["deployment_id"])
			require.Equal(t, "renamed", data["deployment_name"])
		}
		require.Equal(t, replica, items[0]["event_data"].(map[string]any)["replica_id"])
		require.Equal(t, true, items[1]["event_data"].(map[string]any)["retried"])
		var policies [][2]any
		for _, it := range items[2:] {
			data := it["event_data"].(map[string]any)
			policies = append(policies, [2]any{data["previous_policy"], data["policy"]})
		}
		require.Equal(t, [][2]any{{"REJECT_ON_FULL", nil}, {"QUEUE_ON_FULL", "REJECT_ON_FULL"}, {nil, "QUEUE_ON_FULL"}},
			policies, "each change with the policy before it, newest first")
	}

	for group, types := range map[string][]string{
		"REPLICA_TERMINATED":            want[:1],
		"DEPLOYED":                      want[1:2],
		"REQUEST_BACKPRESSURE_SETTINGS": want[2:],
		"AUTOSCALING_SETTINGS":          nil,
	} {
		items, _ := auditPage(t, f.fixture, f.auth, url.Values{"event_type_groups": {group}})
		require.Equal(t, types, eventTypes(items), group)
	}
	items, _ := auditPage(t, f.fixture, f.auth, url.Values{"search": {replica}})
	require.Equal(t, want[:1], eventTypes(items), "a replica is found by its ID")
	other := f.newReplica(t, f.prod.ID, "", modelplane.ReplicaPending)
	items, _ = auditPage(t, f.fixture, f.auth, url.Values{"deployment_ids": {f.prod.ID}, "search": {other}})
	require.Empty(t, items)
	items, _ = auditPage(t, f.fixture, f.auth, url.Values{"deployment_ids": {f.prod.ID}})
	require.Equal(t, want, eventTypes(items), "each is about the deployment, a replica's too")
	items, _ = auditPage(t, f.fixture, f.auth, url.Values{"deployment_ids": {"zzzzzzzz"}})
	require.Empty(t, items)
}
