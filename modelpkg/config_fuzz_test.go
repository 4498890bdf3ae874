package modelpkg_test

import (
	"encoding/json"
	"errors"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/modelplane/modelplane/modelpkg"
)

// configSeeds are config.yaml texts from the tests above: good ones of every runtime and
// broken ones of every rule.
var configSeeds = []string{
	"",
	"model_name: echo\n",
	"model_name: echo\nruntime: python\n",
	"model_name: m\nruntime: process\ncommand: [\"./server\", \"--flag\"]\n",
	"model_name: m\nruntime: docker\nimage: repo/name@sha256:abc\n",
	"model_name: m\nruntime: process\ncommand: [x]\nhealth_path: /ready\npredict_path: /v2/infer\n",
	"model_name: m\nenvironment_variables: {A: x, B_2: 3, C: true, D: null}\nsecrets: [hf_token, other.secret]\nmodel_metadata: {example_model_input: {prompt: hi}, 1: one}\nhot_reload: true\n",
	"model_name: m\nsecrets: {hf_token: null, b: \"\"}\n",
	"model_name: m\nresources: {accelerator: T4, gpu_memory_gib: 16, cpu: \"500m\", memory: 512Mi}\n",
	"model_name: m\nresources: {accelerator: A100, gpu_count: 4}\n",
	"model_name: m\nresources: {accelerator: H100, mig_profile: 3g.40gb}\n",
	"model_name: m\nresources: {cpu: 1.5, memory: 1G}\n",
	"model_name: m\nresources: {accelerator: \"H100:2\", gpu_count: 1}\n",
	"model_name: m\nmodel_metadata: {a: [x, {b: \"\\0\"}]}\n",
	"model_name: m\nmodel_metadata: {a: [[[[[[[[]]]]]]]]}\n",
	"model_name: m\nexamples_filename: ex.yaml\nresources: {use_gpu: true, accelerator: A10G}\n",
	"model_name: m\nruntime: {transport: {kind: websocket, ping_interval_seconds: 2.5}}\n",
	"model_name: m\nruntime: {health_checks: {restart_threshold_seconds: -1}}\n",
	"model_name: m\ndocker_server: {start_command: s, server_port: 8000, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l}\n",
	"model_name: m\nbase_image: {image: a/b}\ndocker_server: {start_command: s, server_port: 1, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l, run_as_user_id: 7}\n",
	"model_name: m\nrequirements_file: pyproject.toml\n",
	// The legacy runtime names docker, where the keys alone would run a process.
	"model_name: m\nruntime: docker\nimage: a/b\ndocker_server: {start_command: s, server_port: 1, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l}\n",
	"model_name: &a m\ndescription: *a\n",
	"model_name: [unclosed\n",
	"- a\n- b\n",
	trussConfig,
}

// configJSONSeeds are create requests' source.deployment.config objects.
var configJSONSeeds = []string{
	`{"model_name": "echo", "resources": {"accelerator": "H100:2", "cpu": 1},
		"environment_variables": {"GREETING": "bonjour", "N": "123"}, "model_metadata": {"big": 1000000, "ratio": 1.5, "tags": ["a", "b"]},
		"truss_key": {"nested": true}}`,
	`{"resources": {}}`,
	`{"model_name": "echo", "resources": {"accelerator": "H100:99"}}`,
	`{"model_name": "echo", "environment_variables": {"PORT": "1"}}`,
	`{"model_name": "true", "description": "null", "command": ["- x", "#"], "runtime": {"predict_concurrency": 2}}`,
	`{"model_name": "a\u0000b"}`,
	`[1]`, `"model_name: echo"`, `null`, `{`,
}

// checkConfigError fails unless err is what ParseConfig promises: a *FieldError.
func checkConfigError(t *testing.T, err error) {
	t.Helper()
	var fe *modelpkg.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *modelpkg.FieldError", err, err)
	}
	if fe.Message == "" {
		t.Fatalf("FieldError without a message: %#v", fe)
	}
}

// checkRoundTrip holds what a parsed config promises of its JSON form, which is what a
// create request sends as source.deployment.config: it encodes, and it parses again by
// ConfigFromJSON to a config that SameAs the first.
//
// SameAs compares the JSON forms, so Raw and Runtime, which that form leaves out, are not
// held to it; nor is the legacy scalar `runtime: python|process|docker`, which the JSON form
// cannot say (it writes runtime as Truss's mapping) and ConfigFromJSON infers again from the
// package's keys. A config whose runtime was set that way and differs from the one its keys
// imply is held only to encoding.
func checkRoundTrip(t *testing.T, cfg modelpkg.Config) {
	t.Helper()
	if !cfg.SameAs(cfg) {
		t.Fatalf("config of %q is not the same as itself: its JSON form does not encode", cfg.Raw)
	}
	if _, err := cfg.JSON(); err != nil {
		t.Fatalf("config.JSON: %v", err)
	}
	obj, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	again, err := modelpkg.ConfigFromJSON(obj)
	if err != nil {
		if legacyRuntime(t, cfg) {
			return
		}
		t.Fatalf("%s does not parse again: %v", obj, err)
	}
	if again.Runtime != cfg.Runtime && legacyRuntime(t, cfg) {
		return
	}
	if !again.SameAs(cfg) {
		b, _ := json.Marshal(again)
		t.Fatalf("re-parsed config differs:\nfirst: %s\nagain: %s", obj, b)
	}
}

// legacyRuntime reports whether cfg's runtime was named by the legacy scalar, and is not the
// one its keys imply: with that scalar null, Raw parses to another runtime, or not at all.
func legacyRuntime(t *testing.T, cfg modelpkg.Config) bool {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(cfg.Raw), &doc); err != nil || len(doc.Content) == 0 {
		return false
	}
	top, named := doc.Content[0], false
	for i := 0; i+1 < len(top.Content); i += 2 {
		if v := top.Content[i+1]; top.Content[i].Value == "runtime" && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			v.Tag, v.Value, v.Style, named = "!!null", "null", 0, true
		}
	}
	if !named {
		return false
	}
	text, err := yaml.Marshal(&doc)
	if err != nil {
		return true
	}
	inferred, err := modelpkg.ParseConfig(text)
	return err != nil || inferred.Runtime != cfg.Runtime
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		cfg, err := modelpkg.ParseConfig(text)
		if err != nil {
			checkConfigError(t, err)
			return
		}
		if cfg.Raw != string(text) {
			t.Fatalf("Raw is not the text as given")
		}
		checkRoundTrip(t, cfg)
	})
}

func FuzzConfigFromJSON(f *testing.F) {
	for _, s := range configJSONSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		cfg, err := modelpkg.ConfigFromJSON(obj)
		if err != nil {
			checkConfigError(t, err)
			return
		}
		// Raw is the config.yaml text of a deployment that runs it.
		fromRaw, err := modelpkg.ParseConfig([]byte(cfg.Raw))
		if err != nil {
			t.Fatalf("Raw %q does not parse: %v", cfg.Raw, err)
		}
		if !fromRaw.SameAs(cfg) {
			t.Fatalf("Raw %q parses to another config", cfg.Raw)
		}
		checkRoundTrip(t, cfg)
	})
}
