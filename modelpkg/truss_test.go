package modelpkg_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
)

// trussConfig is shaped like the config.yaml `truss init` writes and Truss's documentation
// shows, with a runtime block and a name with spaces.
const trussConfig = `model_name: basic truss
description: A model that says hello
python_version: py311
requirements:
  - six==1.16.0
environment_variables: {}
external_package_dirs: []
model_metadata:
  example_model_input: {"prompt": "hi"}
model_module_dir: src
model_class_filename: my_model.py
model_class_name: MyModel
data_dir: assets
bundled_packages_dir: libs
resources:
  accelerator: null
  cpu: "1"
  memory: 2Gi
  use_gpu: false
runtime:
  predict_concurrency: 4
  streaming_read_timeout: 120
  enable_tracing_data: false
  transport:
    kind: http
  health_checks:
    restart_check_delay_seconds: 10
    restart_threshold_seconds: 60
    stop_traffic_threshold_seconds: 30
secrets:
  hf_access_token: null
system_packages: []
live_reload: true
spec_version: "2.0"
`

func TestParseConfig_ReadsATrussConfig(t *testing.T) {
	cfg, err := modelpkg.ParseConfig([]byte(trussConfig))
	require.NoError(t, err)
	assert.Equal(t, "basic truss", cfg.ModelName)
	assert.Equal(t, modelpkg.RuntimePython, cfg.Runtime, "a Model class runs in the python runtime")
	assert.Equal(t, "python3.11", cfg.Interpreter())
	assert.Equal(t, []string{"six==1.16.0"}, cfg.Requirements)
	assert.Equal(t, "src", cfg.ModelModuleDir)
	assert.Equal(t, "my_model.py", cfg.ModelClassFilename)
	assert.Equal(t, "MyModel", cfg.ModelClassName)
	assert.Equal(t, "assets", cfg.DataDir)
	assert.Equal(t, "libs", cfg.BundledPackagesDir)
	assert.Equal(t, 4, cfg.RuntimeSettings.PredictConcurrency)
	assert.Equal(t, 120, cfg.RuntimeSettings.StreamingReadTimeout)
	hc := cfg.RuntimeSettings.HealthChecks
	require.NotNil(t, hc.RestartThresholdSeconds)
	assert.Equal(t, 60, *hc.RestartThresholdSeconds)
	assert.Nil(t, hc.StartupThresholdSeconds, "an unset threshold is the platform's default")
	assert.Equal(t, []string{"hf_access_token"}, cfg.Secrets)
	assert.True(t, cfg.HotReload, "live_reload is Truss's hot_reload")
}

func TestParseConfig_TrussDefaults(t *testing.T) {
	cfg, err := modelpkg.ParseConfig([]byte("model_name: m\n"))
	require.NoError(t, err)
	assert.Equal(t, 1, cfg.RuntimeSettings.PredictConcurrency)
	assert.Equal(t, 60, cfg.RuntimeSettings.StreamingReadTimeout)
	assert.Equal(t, "http", cfg.RuntimeSettings.Transport.Kind)
	assert.Equal(t, "model", cfg.ModelModuleDir)
	assert.Equal(t, "model.py", cfg.ModelClassFilename)
	assert.Equal(t, "Model", cfg.ModelClassName)
	assert.Equal(t, "data", cfg.DataDir)
	assert.Equal(t, "packages", cfg.BundledPackagesDir)
	assert.Equal(t, "", cfg.Interpreter(), "no python_version runs the node's python3")
}

func TestParseConfig_InfersTheRuntime(t *testing.T) {
	const server = "docker_server:\n  start_command: python3 server.py\n  server_port: 8000\n" +
		"  predict_endpoint: /v1/chat/completions\n  readiness_endpoint: /health\n  liveness_endpoint: /health\n"
	tests := []struct {
		name, yaml, runtime, image, health, predict string
	}{
		{"a Model class", "model_name: m\n", "python", "", "/v1/models/model", "/v1/models/model:predict"},
		{"a command", "model_name: m\ncommand: [./server]\n", "process", "", "/health", "/predict"},
		{"an image", "model_name: m\nimage: repo/x:1\n", "docker", "repo/x:1", "/health", "/predict"},
		{"a custom server without an image runs on the host", "model_name: m\n" + server, "process", "", "/health", "/v1/chat/completions"},
		{"a custom server in a base image", "model_name: m\nbase_image: {image: vllm/vllm-openai:v0.7.3}\n" + server,
			"docker", "vllm/vllm-openai:v0.7.3", "/health", "/v1/chat/completions"},
		{"the legacy runtime string still says", "model_name: m\nruntime: process\ncommand: [x]\n", "process", "", "/health", "/predict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := modelpkg.ParseConfig([]byte(tt.yaml))
			require.NoError(t, err)
			assert.Equal(t, tt.runtime, cfg.Runtime)
			assert.Equal(t, tt.image, cfg.Image)
			assert.Equal(t, tt.health, cfg.HealthPath)
			assert.Equal(t, tt.predict, cfg.PredictPath)
		})
	}
}

func TestParseConfig_TrussKeysBrokenNameTheField(t *testing.T) {
	const server = "docker_server: {start_command: s, server_port: 8000, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l}\n"
	tests := []struct {
		name, yaml, field string
		unsupported       bool
	}{
		{"predict_concurrency zero", "model_name: m\nruntime: {predict_concurrency: 0}\n", "runtime.predict_concurrency", false},
		{"predict_concurrency text", "model_name: m\nruntime: {predict_concurrency: many}\n", "runtime.predict_concurrency", false},
		{"legacy workers", "model_name: m\nruntime: {num_workers: 2}\n", "runtime.num_workers", false},
		{"unknown transport", "model_name: m\nruntime: {transport: {kind: smtp}}\n", "runtime.transport.kind", false},
		{"grpc transport", "model_name: m\nruntime: {transport: {kind: grpc}}\n", "runtime.transport.kind", true},
		{"negative threshold", "model_name: m\nruntime: {health_checks: {restart_threshold_seconds: -1}}\n", "runtime.health_checks.restart_threshold_seconds", false},
		{"prewarm imports not a list", "model_name: m\nruntime: {prewarm_imports: torch}\n", "runtime.prewarm_imports", false},
		{"prewarm import not a module", "model_name: m\nruntime: {prewarm_imports: [torch, \"os; rm\"]}\n", "runtime.prewarm_imports[1]", false},
		{"prewarm imports on a process", "model_name: m\ncommand: [x]\nruntime: {prewarm_imports: [torch]}\n", "runtime.prewarm_imports", true},
		{"module dir outside", "model_name: m\nmodel_module_dir: ../x\n", "model_module_dir", false},
		{"absolute data dir", "model_name: m\ndata_dir: /etc\n", "data_dir", false},
		{"class file not python", "model_name: m\nmodel_class_filename: model.txt\n", "model_class_filename", false},
		{"class name not a name", "model_name: m\nmodel_class_name: my-model\n", "model_class_name", false},
		{"python version", "model_name: m\npython_version: \"3.11\"\n", "python_version", false},
		{"both requirement forms", "model_name: m\nrequirements: [a]\nrequirements_file: r.txt\n", "requirements_file", false},
		{"requirement with a newline", "model_name: m\nrequirements: [\"a\\nb\"]\n", "requirements[0]", false},
		{"pyproject", "model_name: m\nrequirements_file: pyproject.toml\n", "requirements_file", true},
		{"system packages on python", "model_name: m\nsystem_packages: [ffmpeg]\n", "system_packages", true},
		{"base image on python", "model_name: m\nbase_image: {image: python:3.11}\n", "base_image", true},
		{"system packages on a process", "model_name: m\ncommand: [x]\nsystem_packages: [ffmpeg]\n", "system_packages", true},
		{"requirements in an image", "model_name: m\nimage: a/b\nrequirements: [x]\n", "requirements", true},
		{"build commands", "model_name: m\nbuild_commands: [make]\n", "build_commands", true},
		{"server without a port", "model_name: m\ndocker_server: {start_command: s, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l}\n", "docker_server.server_port", false},
		{"server without liveness", "model_name: m\ndocker_server: {start_command: s, server_port: 1, predict_endpoint: /p, readiness_endpoint: /r}\n", "docker_server.liveness_endpoint", false},
		{"server endpoint relative", "model_name: m\ndocker_server: {start_command: s, server_port: 1, predict_endpoint: p, readiness_endpoint: /r, liveness_endpoint: /l}\n", "docker_server.predict_endpoint", false},
		{"server without a command", "model_name: m\ndocker_server: {server_port: 1, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l}\n", "docker_server.start_command", false},
		{"no_build without an image", "model_name: m\ndocker_server: {no_build: true, server_port: 1, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l}\n", "docker_server.no_build", false},
		{"server and command", "model_name: m\ncommand: [x]\n" + server, "command", false},
		{"root user", "model_name: m\nbase_image: {image: a/b}\ndocker_server: {start_command: s, server_port: 1, predict_endpoint: /p, readiness_endpoint: /r, liveness_endpoint: /l, run_as_user_id: 0}\n", "docker_server.run_as_user_id", false},
		{"relative python path", "model_name: m\nbase_image: {image: a/b, python_executable_path: python}\n" + server, "base_image.python_executable_path", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := requireFieldError(t, tt.yaml, tt.field)
			assert.Equal(t, tt.unsupported, fe.Unsupported, "422 rather than 400: %v", fe)
		})
	}
}

func TestValidateModelName_IsFreeText(t *testing.T) {
	for _, ok := range []string{"basic truss", "Llama 3.1 (8B) — chat", "a/b", "x"} {
		assert.NoError(t, modelpkg.ValidateModelName(ok), ok)
	}
	for _, bad := range []string{"", "   ", "a\nb", "a\x00b", string(make256('a'))} {
		assert.Error(t, modelpkg.ValidateModelName(bad), "%q", bad)
	}
}

func TestParseConfig_ReadsPrewarmImports(t *testing.T) {
	cfg, err := modelpkg.ParseConfig([]byte("model_name: m\nruntime: {prewarm_imports: [torch, transformers.models]}\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"torch", "transformers.models"}, cfg.RuntimeSettings.PrewarmImports)
}
