package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

// bodyContext is the echo.Context of a POST with body, as the body decoders get it.
func bodyContext(body []byte) echo.Context {
	req := httptest.NewRequest(http.MethodPost, "/v1/models", bytes.NewReader(body))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	return echo.New().NewContext(req, httptest.NewRecorder())
}

// check4xx fails unless err is nil or what the client is answered is a 4xx: a body is the
// caller's, so nothing in it may make a 500.
func check4xx(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	e, internal := toError(err)
	if internal || e.Status < 400 || e.Status > 499 {
		t.Fatalf("%v (%T) answers %d, internal %t; want a 4xx", err, err, e.Status, internal)
	}
}

// bodySeeds are bodies from the API's tests: create requests, patches and secrets.
var bodySeeds = []string{
	`{"source": {"name": "m", "s3_key": "a1", "deployment": {"config": {"model_name": "echo", "resources": {"accelerator": "H100:2"}},
		"raw_config": "model_name: echo\n", "user_env": {"A": "b"}, "labels": {"team": "x"}, "environment_name": "staging",
		"preserve_env_instance_type": false, "deploy_timeout_minutes": 30, "deployment_name": "v1", "name": "v1"}}, "environment": "staging"}`,
	`{"source": {"name": "m", "archive_id": "a1", "deployment": {"is_development": true}}, "development": true}`,
	`{"source": {"name": "m", "s3_key": "a1", "deployment": {"is_development": true, "environment_name": "production"}}}`,
	`{"source": {"name": "m", "s3_key": "a1", "deployment": {"config": {"model_name": "echo", "system_packages": ["ffmpeg"]}}}}`,
	`{"source": {"name": "m", "s3_key": "a1", "deployment": {"deploy_timeout_minutes": 1e100, "name": "a", "deployment_name": "b"}}}`,
	`{"source": {"name": "m", "s3_key": "a1", "disable_archive_download": "yes"}, "development": null, "environment": 1}`,
	`{"prev_patch_hash": "abc", "next_patch_point": {"content_hashes": {}, "config": "model_name: m\n"}, "patch_ops": []}`,
	`{"name": "hf_token", "value": "a\u0000b"}`,
	`{"source": {"labels": {"a\u0000": 1}}}`,
	`{"source": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"unknown": 1}`, `null`, `[]`, `{`, ``,
}

// FuzzReadBody runs a body through the decoders that need no database: readObject and its
// field readers, the create routes' readCreate with its payload and config, and the secrets
// route's readObjectStoring. None panics, and what they refuse is a 4xx.
func FuzzReadBody(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := readObject(bodyContext(body), "source", "development", "environment", "name", "value",
			"prev_patch_hash", "next_patch_point", "patch_ops")
		check4xx(t, err)
		for name, raw := range obj {
			_, _, err := stringField(obj, name)
			check4xx(t, err)
			_, err = boolField(obj, name, false)
			check4xx(t, err)
			p, err := readPayload(raw, name)
			check4xx(t, err)
			if err == nil {
				_, err = resolveTarget(p, nil, nil)
				check4xx(t, err)
				_, err = p.checkConfig()
				check4xx(t, err)
			}
		}
		if obj != nil {
			if _, err := marshalObject(obj); err != nil {
				t.Fatalf("a decoded object does not encode again: %v", err)
			}
		}

		for _, needName := range []bool{true, false} {
			req, err := readCreate(bodyContext(body), needName)
			check4xx(t, err)
			if err == nil {
				_, err = req.source.Deployment.checkConfig()
				check4xx(t, err)
			}
		}

		_, err = readObjectStoring(bodyContext(body), 4096, []string{"value"}, "name", "value")
		check4xx(t, err)
	})
}

// FuzzReadPayload runs a DeploymentArchivePayloadV1 through readPayload, resolveTarget and
// checkConfig, as prepare_model_upload and the create routes do.
func FuzzReadPayload(f *testing.F) {
	for _, s := range bodySeeds {
		var obj struct {
			Source struct {
				Deployment json.RawMessage `json:"deployment"`
			} `json:"source"`
		}
		if json.Unmarshal([]byte(s), &obj) == nil && len(obj.Source.Deployment) > 0 {
			f.Add([]byte(obj.Source.Deployment), true, "staging")
		}
	}
	f.Add([]byte(`{"config": {"model_name": "m", "runtime": "docker"}}`), false, "")
	f.Add([]byte(`{"config": []}`), false, "")
	f.Fuzz(func(t *testing.T, raw []byte, dev bool, env string) {
		p, err := readPayload(raw, "deployment")
		check4xx(t, err)
		if err != nil {
			return
		}
		_, err = resolveTarget(p, &dev, &env)
		check4xx(t, err)
		_, err = resolveTarget(p, nil, nil)
		check4xx(t, err)
		_, err = p.checkConfig()
		check4xx(t, err)
	})
}
