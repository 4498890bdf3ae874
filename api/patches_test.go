package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/store"
)

// devWithEcho uploads the echo example and makes it the model's development deployment,
// and a published deployment of it; it returns both IDs and the echo example's point.
func devWithEcho(t *testing.T, f *fixture, m store.Model, key string) (dev, published string, base patch.Point) {
	t.Helper()
	rec := upload(t, f.e, key, "application/gzip", echoPackage(t))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var a struct{ ID string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &a))
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, IsDevelopment: true, ArchiveID: &a.ID})
	require.NoError(t, err)
	p, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, ArchiveID: &a.ID})
	require.NoError(t, err)
	base, err = patch.FromDir("../examples/models/echo")
	require.NoError(t, err)
	return d.ID, p.ID, base
}

func body(t *testing.T, v map[string]any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestPatches_StageAgainstTheCurrentPointAndRefuseWhatDoesNotFit(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	dev, published, base := devWithEcho(t, f, m, key)
	url := "/v1/models/" + m.ID + "/deployments/development/patches"

	got := f.do(t, http.MethodGet, url, auth)
	require.Equal(t, http.StatusOK, got.Status, "%v", got.Body)
	require.Equal(t, dev, got.Body["deployment_id"])
	require.Equal(t, base.Hash(), got.Body["patch_hash"], "the first point is the archive's")
	require.Equal(t, base.Hash(), got.Body["applied_patch_hash"])

	code := "class Model:\n    def predict(self, x):\n        return 2\n"
	next := base
	next.ContentHashes = map[string]*string{}
	for k, v := range base.ContentHashes {
		next.ContentHashes[k] = v
	}
	h := patch.SumHex([]byte(code))
	next.ContentHashes["model/model.py"] = &h
	update := []map[string]any{{"type": "model_code", "action": "UPDATE", "path": "model/model.py", "content": code, "hot_reload": true}}
	withReqs := next
	withReqs.Requirements = []string{"numpy==2.1.0"}
	good := map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": withReqs, "patch_ops": update}

	for _, tt := range []struct {
		name   string
		path   string
		body   string
		status int
		text   string
	}{
		{"no base", url, body(t, map[string]any{"next_patch_point": next, "patch_ops": update}), http.StatusBadRequest, "prev_patch_hash: required"},
		{"stale base", url, body(t, map[string]any{"prev_patch_hash": strings.Repeat("a", 64), "next_patch_point": next, "patch_ops": update}), http.StatusConflict, "is not the development deployment's current point"},
		{"no point", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "patch_ops": update}), http.StatusBadRequest, "next_patch_point: required"},
		{"bad hash in point", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "patch_ops": update,
			"next_patch_point": map[string]any{"content_hashes": map[string]any{"model": nil, "model/model.py": "xyz"}, "config": base.Config}}), http.StatusBadRequest, `next_patch_point.content_hashes["model/model.py"]`},
		{"path outside the package", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": next,
			"patch_ops": []map[string]any{{"type": "model_code", "action": "ADD", "path": "../x.py", "content": "x"}}}), http.StatusBadRequest, "patch_ops[0].path"},
		{"blank requirement", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "patch_ops": update,
			"next_patch_point": map[string]any{"content_hashes": next.ContentHashes, "config": next.Config, "requirements": []string{" "}}}), http.StatusBadRequest, "next_patch_point.requirements[0]"},
		{"unknown op field", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": next,
			"patch_ops": []map[string]any{{"type": "model_code", "action": "UPDATE", "path": "model/model.py", "content": code, "colour": 1}}}), http.StatusBadRequest, "patch_ops"},
		{"unknown type", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": next,
			"patch_ops": []map[string]any{{"type": "python_requirement", "action": "ADD"}}}), http.StatusBadRequest, "patch_ops[0].type"},
		{"add what exists", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": next,
			"patch_ops": []map[string]any{{"type": "model_code", "action": "ADD", "path": "model/model.py", "content": code}}}), http.StatusBadRequest, "UPDATE it"},
		{"config that does not parse", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": next,
			"patch_ops": []map[string]any{{"type": "config", "action": "UPDATE", "content": "runtime: [\n"}}}), http.StatusBadRequest, "patch_ops[0].content"},
		{"ops that do not lead to the point", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": base,
			"patch_ops": update}), http.StatusBadRequest, "model/model.py differs"},
		{"a patch that changes nothing", url, body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": base,
			"patch_ops": []map[string]any{{"type": "model_code", "action": "ADD", "path": "model/x.py", "content": ""},
				{"type": "model_code", "action": "REMOVE", "path": "model/x.py"}}}), http.StatusBadRequest, "changes nothing"},
		{"a published deployment", "/v1/models/" + m.ID + "/deployments/" + published + "/patches", body(t, good), http.StatusUnprocessableEntity, "development deployment only"},
		{"a body over 32 MiB", url, `{"prev_patch_hash": "` + strings.Repeat("a", 33<<20) + `"}`, http.StatusRequestEntityTooLarge, "body over"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.send(t, http.MethodPost, tt.path, auth, tt.body)
			require.Equal(t, tt.status, r.Status, "%v", r.Body)
			require.Contains(t, message(r), tt.text)
		})
	}

	r := f.send(t, http.MethodPost, url, auth, body(t, good))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, next.Hash(), r.Body["patch_hash"])
	point, _ := r.Body["patch_point"].(map[string]any)
	require.Equal(t, next.Hash(), point["hash"], "the answer is the staged patch point with its hash: %v", r.Body)
	require.Equal(t, []any{"numpy==2.1.0"}, point["requirements"], "the resolved requirements are kept as sent")
	require.Equal(t, base.Hash(), r.Body["applied_patch_hash"], "a staged patch is not applied before a sync")
	require.EqualValues(t, 1, r.Body["pending_patches"])
	r = f.send(t, http.MethodPost, url, auth, body(t, good))
	require.Equal(t, http.StatusConflict, r.Status, "the same patch again is against a point that is gone: %v", r.Body)

	// The staged point is what the next patch starts from.
	got = f.do(t, http.MethodGet, url, auth)
	require.Equal(t, next.Hash(), got.Body["patch_hash"])
}

func TestKeepAwake_BoundsItsLease(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	_, published, _ := devWithEcho(t, f, m, key)
	url := "/v1/models/" + m.ID + "/deployments/development/keep_awake"
	for _, b := range []string{`{"seconds": 5}`, `{"seconds": 3601}`, `{"seconds": "a"}`, `{"minutes": 1}`} {
		r := f.send(t, http.MethodPost, url, auth, b)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %v", b, r.Body)
	}
	r := f.send(t, http.MethodPost, url, auth, `{"seconds": 60}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.NotEmpty(t, r.Body["awake_until"])
	r = f.send(t, http.MethodPost, "/v1/models/"+m.ID+"/deployments/"+published+"/keep_awake", auth, `{}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
}

func TestPatchesState_RunningAndPendingPoints(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	dev, published, base := devWithEcho(t, f, m, key)
	state := "/v1/models/" + m.ID + "/deployments/development/patches/state"
	hashes := func(p patch.Point) map[string]any {
		out := map[string]any{}
		for k, v := range p.ContentHashes {
			if v == nil {
				out[k] = nil
			} else {
				out[k] = *v
			}
		}
		return out
	}

	got := f.do(t, http.MethodGet, state, auth)
	require.Equal(t, http.StatusOK, got.Status, "%v", got.Body)
	running := got.Body["running_patch_point"].(map[string]any)
	require.Equal(t, base.Hash(), running["hash"], "before any patch the deployment runs its package")
	require.Equal(t, base.Config, running["config"])
	require.Equal(t, hashes(base), running["content_hashes"])
	require.Equal(t, []any{}, running["requirements"])
	require.Nil(t, got.Body["pending_patch_point"])

	code := "class Model:\n    def predict(self, x):\n        return 3\n"
	next := base
	next.ContentHashes = map[string]*string{}
	for k, v := range base.ContentHashes {
		next.ContentHashes[k] = v
	}
	h := patch.SumHex([]byte(code))
	next.ContentHashes["model/model.py"] = &h
	r := f.send(t, http.MethodPost, "/v1/models/"+m.ID+"/deployments/development/patches", auth, body(t, map[string]any{
		"prev_patch_hash": base.Hash(), "next_patch_point": next,
		"patch_ops": []map[string]any{{"type": "model_code", "action": "UPDATE", "path": "model/model.py", "content": code}}}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)

	got = f.do(t, http.MethodGet, state, auth)
	require.Equal(t, base.Hash(), got.Body["running_patch_point"].(map[string]any)["hash"], "a staged patch is not running yet")
	pending := got.Body["pending_patch_point"].(map[string]any)
	require.Equal(t, next.Hash(), pending["hash"])
	require.Equal(t, hashes(next), pending["content_hashes"])

	require.NoError(t, store.MarkPatchesApplied(context.Background(), f.db, dev, 1, next.Hash()))
	got = f.do(t, http.MethodGet, state, auth)
	require.Equal(t, next.Hash(), got.Body["running_patch_point"].(map[string]any)["hash"], "once synced the patch runs")
	require.Nil(t, got.Body["pending_patch_point"])

	// With a second patch staged, the running point is the first patch's, replayed from the
	// package.
	third := next
	third.ContentHashes = map[string]*string{}
	for k, v := range next.ContentHashes {
		third.ContentHashes[k] = v
	}
	extra := "x = 1\n"
	hx := patch.SumHex([]byte(extra))
	third.ContentHashes["model/extra.py"] = &hx
	r = f.send(t, http.MethodPost, "/v1/models/"+m.ID+"/deployments/development/patches", auth, body(t, map[string]any{
		"prev_patch_hash": next.Hash(), "next_patch_point": third,
		"patch_ops": []map[string]any{{"type": "model_code", "action": "ADD", "path": "model/extra.py", "content": extra}}}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	got = f.do(t, http.MethodGet, state, auth)
	running = got.Body["running_patch_point"].(map[string]any)
	require.Equal(t, next.Hash(), running["hash"])
	require.Equal(t, hashes(next), running["content_hashes"])
	require.Equal(t, third.Hash(), got.Body["pending_patch_point"].(map[string]any)["hash"])

	r = f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments/"+published+"/patches/state", auth)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status)
	require.Contains(t, message(r), "development deployment only")
}
