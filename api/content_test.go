package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/patch"
)

// nested is n JSON arrays, one inside the other.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

func TestContent_NULAndDeepNestingAre400NamingTheField(t *testing.T) {
	f := newCreateFixture(t, 0)
	models, deployments := "/v1/models", "/v1/models/"+f.m.ID+"/deployments"
	// create is a create body for path whose source.deployment is dep.
	create := func(path string, dep map[string]any, top ...any) string {
		src := map[string]any{"kind": "model_archive", "s3_key": f.archive, "deployment": dep}
		if path == models {
			src["name"] = "greeter"
		}
		body := map[string]any{"source": src}
		for i := 0; i+1 < len(top); i += 2 {
			body[top[i].(string)] = top[i+1]
		}
		return jsonBody(t, body)
	}
	config := func(kv ...any) map[string]any {
		c := map[string]any{"model_name": "greeter"}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"config": c}
	}
	deep := `{"name": "staging", "autoscaling_settings": {"x": ` + nested(10_000) + `}}`
	for _, tt := range []struct {
		name, method, path, body, text string
	}{
		{"model_metadata of a new model's config", http.MethodPost, models,
			create(models, config("model_metadata", map[string]any{"note": "a\x00b"})), "source.deployment.config.model_metadata.note: must not contain NUL"},
		{"model_metadata of a new deployment's config", http.MethodPost, deployments,
			create(deployments, config("model_metadata", map[string]any{"note": "a\x00b"})), "source.deployment.config.model_metadata.note: must not contain NUL"},
		{"a key of model_metadata", http.MethodPost, deployments,
			create(deployments, config("model_metadata", map[string]any{"a\x00": 1})), "source.deployment.config.model_metadata: a key must not contain NUL"},
		{"environment_variables of the config", http.MethodPost, deployments,
			create(deployments, config("environment_variables", map[string]any{"GREETING": "\x00"})), "source.deployment.config.environment_variables.GREETING: must not contain NUL"},
		{"user_env", http.MethodPost, models,
			create(models, map[string]any{"user_env": map[string]any{"A": "x\x00"}}), "source.deployment.user_env.A: must not contain NUL"},
		{"labels", http.MethodPost, deployments,
			create(deployments, map[string]any{"labels": map[string]any{"team": "x\x00"}}), "source.deployment.labels.team: must not contain NUL"},
		{"deployment name", http.MethodPost, deployments,
			create(deployments, map[string]any{"name": "blue\x00"}), "source.deployment.name: must not contain NUL"},
		{"environment of a create body", http.MethodPost, deployments,
			create(deployments, nil, "environment", "prod\x00"), "environment: must not contain NUL"},
		{"new environment's name", http.MethodPost, "/v1/models/" + f.m.ID + "/environments",
			`{"name": "staging\u0000"}`, "name: must not contain NUL"},
		{"environment name in the path", http.MethodGet, "/v1/models/" + f.m.ID + "/environments/prod%00", "", "env: must not contain NUL"},
		{"deployment in the path", http.MethodPatch, "/v1/models/" + f.m.ID + "/deployments/d%00", `{"name": "blue"}`, "deployment_id: must not contain NUL"},
		{"model_metadata nested 10,000 deep", http.MethodPost, models,
			`{"source": {"kind": "model_archive", "name": "greeter", "s3_key": "` + f.archive + `", "deployment": {"config": {"model_name": "greeter", "model_metadata": {"a": ` + nested(10_000) + `}}}}}`,
			"source.deployment.config.model_metadata.a" + strings.Repeat("[0]", 59) + ": nested deeper than 64 levels"},
		{"a settings body nested 10,000 deep", http.MethodPost, "/v1/models/" + f.m.ID + "/environments", deep,
			"autoscaling_settings.x" + strings.Repeat("[0]", 62) + ": nested deeper than 64 levels"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.send(t, tt.method, tt.path, f.auth, tt.body)
			require.Equal(t, http.StatusBadRequest, r.Status, "%v", r.Body)
			require.Contains(t, message(r), tt.text)
		})
	}
	require.Empty(t, f.tc.startedWorkflows(), "a refused request starts nothing")
	f.requireNothingMade(t)
}

func TestContent_ArchiveWhoseConfigHasNULIs400NamingTheKey(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	pkg := packDir(t, map[string]string{
		"config.yaml":    "model_name: greeter\nmodel_metadata:\n  note: \"a\\0b\"\n",
		"model/model.py": "class Model:\n    def predict(self, x):\n        return x\n",
	})
	rec := upload(t, f.e, key, "application/gzip", pkg)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "config.yaml: model_metadata.note: must not contain NUL")
}

func TestContent_PatchWithNULIs400AndBinaryContentStillStages(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	_, _, base := devWithEcho(t, f, m, key)
	url := "/v1/models/" + m.ID + "/deployments/development/patches"
	withFile := func(path string, content []byte) patch.Point {
		next := base
		next.ContentHashes = map[string]*string{}
		for k, v := range base.ContentHashes {
			next.ContentHashes[k] = v
		}
		h := patch.SumHex(content)
		next.ContentHashes[path] = &h
		return next
	}
	text := "x = '\x00'\n"
	nulConfig := base
	nulConfig.Config = "model_name: echo\nmodel_metadata: {note: \"a\\0b\"}\n"
	for _, tt := range []struct {
		name, body, text string
	}{
		{"text file content", body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": withFile("model/x.py", []byte(text)),
			"patch_ops": []map[string]any{{"type": "model_code", "action": "ADD", "path": "model/x.py", "content": text}}}),
			"patch_ops[0].content: must not contain NUL"},
		{"the point's config", body(t, map[string]any{"prev_patch_hash": base.Hash(),
			"next_patch_point": map[string]any{"content_hashes": base.ContentHashes, "config": "model_name: echo\x00\n"},
			"patch_ops":        []map[string]any{{"type": "config", "action": "UPDATE", "content": "model_name: echo\n"}}}),
			"next_patch_point.config: must not contain NUL"},
		{"a config whose YAML escapes NUL", body(t, map[string]any{"prev_patch_hash": base.Hash(), "next_patch_point": nulConfig,
			"patch_ops": []map[string]any{{"type": "config", "action": "UPDATE", "content": nulConfig.Config}}}),
			"model_metadata.note: must not contain NUL"},
		{"ops nested 10,000 deep", `{"prev_patch_hash": "` + base.Hash() + `", "patch_ops": ` + nested(10_000) + `}`,
			"patch_ops" + strings.Repeat("[0]", 63) + ": nested deeper than 64 levels"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.send(t, http.MethodPost, url, auth, tt.body)
			require.Equal(t, http.StatusBadRequest, r.Status, "%v", r.Body)
			require.Contains(t, message(r), tt.text)
		})
	}

	bin := []byte{0x7f, 'E', 'L', 'F', 0, 0, 1, 0}
	r := f.send(t, http.MethodPost, url, auth, body(t, map[string]any{"prev_patch_hash": base.Hash(),
		"next_patch_point": withFile("model/lib.so", bin),
		"patch_ops":        []map[string]any{{"type": "model_code", "action": "ADD", "path": "model/lib.so", "content_bytes": bin}}}))
	require.Equal(t, http.StatusOK, r.Status, "bytes with NUL are stored as base64: %v", r.Body)
}

func TestContent_SecretValueMayHoldNUL(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.adminWorkspace(t)
	r := f.send(t, http.MethodPost, "/v1/secrets", "Api-Key "+key, `{"name": "bin", "value": "a\u0000b"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	r = f.send(t, http.MethodPost, "/v1/secrets", "Api-Key "+key, `{"name": "bin\u0000", "value": "x"}`)
	require.Equal(t, http.StatusBadRequest, r.Status, "%v", r.Body)
}
