package modelpkg_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
)

func TestParseConfig_AppliesDefaultsPerRuntime(t *testing.T) {
	tests := []struct {
		name                  string
		yaml                  string
		wantRuntime           string
		wantHealth, wantPred  string
		wantGPUs              int
		wantCommand           []string
		wantImage             string
		wantEnv               map[string]string
		wantSecrets           []string
		wantHotReload         bool
		wantMetadataHasAnyKey bool
	}{
		{
			name:        "runtime omitted is python",
			yaml:        "model_name: echo\n",
			wantRuntime: "python", wantHealth: "/v1/models/model", wantPred: "/v1/models/model:predict",
		},
		{
			name:        "python",
			yaml:        "model_name: echo\nruntime: python\n",
			wantRuntime: "python", wantHealth: "/v1/models/model", wantPred: "/v1/models/model:predict",
		},
		{
			name:        "process",
			yaml:        "model_name: m\nruntime: process\ncommand: [\"./server\", \"--flag\"]\n",
			wantRuntime: "process", wantHealth: "/health", wantPred: "/predict",
			wantCommand: []string{"./server", "--flag"},
		},
		{
			name:        "docker",
			yaml:        "model_name: m\nruntime: docker\nimage: repo/name@sha256:abc\n",
			wantRuntime: "docker", wantHealth: "/health", wantPred: "/predict",
			wantImage: "repo/name@sha256:abc",
		},
		{
			name:        "explicit paths win over defaults",
			yaml:        "model_name: m\nruntime: process\ncommand: [x]\nhealth_path: /ready\npredict_path: /v2/infer\n",
			wantRuntime: "process", wantHealth: "/ready", wantPred: "/v2/infer", wantCommand: []string{"x"},
		},
		{
			name: "everything else decoded",
			yaml: `model_name: m
environment_variables: {A: x, B_2: 3, C: true, D: null}
secrets: [hf_token, other.secret]
model_metadata: {example_model_input: {prompt: hi}, 1: one}
hot_reload: true
`,
			wantRuntime: "python", wantHealth: "/v1/models/model", wantPred: "/v1/models/model:predict",
			wantEnv:     map[string]string{"A": "x", "B_2": "3", "C": "true", "D": ""},
			wantSecrets: []string{"hf_token", "other.secret"}, wantHotReload: true, wantMetadataHasAnyKey: true,
		},
		{
			name:        "truss-style secrets mapping gives the names",
			yaml:        "model_name: m\nsecrets: {hf_token: null, b: \"\"}\n",
			wantRuntime: "python", wantHealth: "/v1/models/model", wantPred: "/v1/models/model:predict",
			wantSecrets: []string{"hf_token", "b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := modelpkg.ParseConfig([]byte(tt.yaml))
			require.NoError(t, err)
			assert.Equal(t, tt.wantRuntime, cfg.Runtime, "runtime")
			assert.Equal(t, tt.wantHealth, cfg.HealthPath, "health path")
			assert.Equal(t, tt.wantPred, cfg.PredictPath, "predict path")
			assert.Equal(t, tt.wantGPUs, cfg.Resources.GPUCount, "GPU count")
			assert.Equal(t, tt.wantCommand, cfg.Command, "command")
			assert.Equal(t, tt.wantImage, cfg.Image, "image")
			assert.Equal(t, tt.wantEnv, cfg.EnvironmentVariables, "environment variables")
			assert.Equal(t, tt.wantSecrets, cfg.Secrets, "secrets")
			assert.Equal(t, tt.wantHotReload, cfg.HotReload, "hot_reload")
			assert.Equal(t, tt.wantMetadataHasAnyKey, len(cfg.ModelMetadata) > 0, "model_metadata: %v", cfg.ModelMetadata)
			assert.Equal(t, tt.yaml, cfg.Raw, "Raw keeps the text as uploaded")
		})
	}
}

func TestParseConfig_ResolvesGPUsFromAcceleratorAndCount(t *testing.T) {
	tests := []struct {
		name      string
		resources string
		want      modelpkg.Resources
	}{
		{"no resources is CPU only", "{}", modelpkg.Resources{}},
		{"type alone is one GPU", "{accelerator: H100}",
			modelpkg.Resources{Accelerator: "H100", GPUType: "H100", GPUCount: 1}},
		{"type and count", "{accelerator: \"A100:2\"}",
			modelpkg.Resources{Accelerator: "A100:2", GPUType: "A100", GPUCount: 2}},
		{"eight H200", "{accelerator: \"H200:8\"}",
			modelpkg.Resources{Accelerator: "H200:8", GPUType: "H200", GPUCount: 8}},
		{"type is upper-cased", "{accelerator: \"l4:1\"}",
			modelpkg.Resources{Accelerator: "l4:1", GPUType: "L4", GPUCount: 1}},
		{"truss type with underscore", "{accelerator: H100_40GB}",
			modelpkg.Resources{Accelerator: "H100_40GB", GPUType: "H100_40GB", GPUCount: 1}},
		{"gpu_count alone means any GPU type", "{gpu_count: 2}",
			modelpkg.Resources{GPUCount: 2}},
		{"gpu_count agrees with accelerator count", "{accelerator: \"A100:2\", gpu_count: 2}",
			modelpkg.Resources{Accelerator: "A100:2", GPUType: "A100", GPUCount: 2}},
		{"gpu_count gives the count of a bare type", "{accelerator: A100, gpu_count: 4}",
			modelpkg.Resources{Accelerator: "A100", GPUType: "A100", GPUCount: 4}},
		{"mig profile alone is one slice", "{mig_profile: 1g.18gb}",
			modelpkg.Resources{MIGProfile: "1g.18gb", GPUCount: 1}},
		{"mig profile with a type", "{accelerator: H100, mig_profile: 3g.40gb}",
			modelpkg.Resources{Accelerator: "H100", GPUType: "H100", GPUCount: 1, MIGProfile: "3g.40gb"}},
		{"gpu memory, cpu and memory", "{accelerator: T4, gpu_memory_gib: 16, cpu: \"500m\", memory: 512Mi}",
			modelpkg.Resources{Accelerator: "T4", GPUType: "T4", GPUCount: 1, GPUMemoryGiB: 16, CPU: "500m", Memory: "512Mi"}},
		{"numeric cpu", "{cpu: 1.5, memory: 1G}", modelpkg.Resources{CPU: "1.5", Memory: "1G"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := modelpkg.ParseConfig([]byte("model_name: m\nresources: " + tt.resources + "\n"))
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg.Resources)
		})
	}
}

func TestParseConfig_RejectsBrokenRulesNamingTheField(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		wantField string
	}{
		{"not yaml", "model_name: [unclosed\n", ""},
		{"not a mapping", "- a\n- b\n", ""},
		{"empty file lacks model_name", "", "model_name"},
		{"model_name missing", "runtime: python\n", "model_name"},
		{"model_name blank", "model_name: \"  \"\n", "model_name"},
		{"model_name with a control character", "model_name: \"a\\tb\"\n", "model_name"},
		{"model_name too long", "model_name: " + string(make256('a')) + "\n", "model_name"},
		{"model_name not a string", "model_name: {a: b}\n", "model_name"},
		{"key given twice", "model_name: a\nmodel_name: b\n", "model_name"},
		{"unknown legacy runtime", "model_name: m\nruntime: java\n", "runtime"},
		{"runtime a list", "model_name: m\nruntime: [a]\n", "runtime"},
		{"process without command", "model_name: m\nruntime: process\n", "command"},
		{"process with empty command", "model_name: m\nruntime: process\ncommand: []\n", "command"},
		{"command not a list", "model_name: m\nruntime: process\ncommand: ./server\n", "command"},
		{"command item not a string", "model_name: m\nruntime: process\ncommand: [[a]]\n", "command[0]"},
		{"command with legacy python runtime", "model_name: m\nruntime: python\ncommand: [x]\n", "command"},
		{"docker without image", "model_name: m\nruntime: docker\n", "image"},
		{"image with process runtime", "model_name: m\nruntime: process\ncommand: [x]\nimage: a/b\n", "image"},
		{"resources not a mapping", "model_name: m\nresources: H100\n", "resources"},
		{"accelerator count zero", "model_name: m\nresources: {accelerator: \"H100:0\"}\n", "resources.accelerator"},
		{"accelerator count 17", "model_name: m\nresources: {accelerator: \"H100:17\"}\n", "resources.accelerator"},
		{"accelerator count not a number", "model_name: m\nresources: {accelerator: \"H100:x\"}\n", "resources.accelerator"},
		{"accelerator type with a space", "model_name: m\nresources: {accelerator: \"H 100\"}\n", "resources.accelerator"},
		{"accelerator empty type", "model_name: m\nresources: {accelerator: \":2\"}\n", "resources.accelerator"},
		{"gpu_count negative", "model_name: m\nresources: {gpu_count: -1}\n", "resources.gpu_count"},
		{"gpu_count 17", "model_name: m\nresources: {gpu_count: 17}\n", "resources.gpu_count"},
		{"gpu_count not an integer", "model_name: m\nresources: {gpu_count: two}\n", "resources.gpu_count"},
		{"gpu_count disagrees with accelerator", "model_name: m\nresources: {accelerator: \"H100:2\", gpu_count: 1}\n", "resources.gpu_count"},
		{"gpu_count zero with accelerator", "model_name: m\nresources: {accelerator: H100, gpu_count: 0}\n", "resources.gpu_count"},
		{"mig profile malformed", "model_name: m\nresources: {mig_profile: 1g18gb}\n", "resources.mig_profile"},
		{"mig profile upper case", "model_name: m\nresources: {mig_profile: 1G.18GB}\n", "resources.mig_profile"},
		{"mig profile with two GPUs", "model_name: m\nresources: {accelerator: \"H100:2\", mig_profile: 1g.18gb}\n", "resources.mig_profile"},
		{"gpu memory negative", "model_name: m\nresources: {accelerator: H100, gpu_memory_gib: -1}\n", "resources.gpu_memory_gib"},
		{"gpu memory without a GPU", "model_name: m\nresources: {gpu_memory_gib: 40}\n", "resources.gpu_memory_gib"},
		{"cpu malformed", "model_name: m\nresources: {cpu: one}\n", "resources.cpu"},
		{"cpu zero", "model_name: m\nresources: {cpu: \"0\"}\n", "resources.cpu"},
		{"cpu negative", "model_name: m\nresources: {cpu: \"-1\"}\n", "resources.cpu"},
		{"memory malformed", "model_name: m\nresources: {memory: 2GB}\n", "resources.memory"},
		{"memory zero", "model_name: m\nresources: {memory: 0Gi}\n", "resources.memory"},
		{"health path relative", "model_name: m\nhealth_path: health\n", "health_path"},
		{"predict path relative", "model_name: m\npredict_path: predict\n", "predict_path"},
		{"predict path with a space", "model_name: m\npredict_path: /a b\n", "predict_path"},
		{"env not a mapping", "model_name: m\nenvironment_variables: [A]\n", "environment_variables"},
		{"env name starting with a digit", "model_name: m\nenvironment_variables: {1A: x}\n", "environment_variables.1A"},
		{"env name with a dash", "model_name: m\nenvironment_variables: {A-B: x}\n", "environment_variables.A-B"},
		{"env value a mapping", "model_name: m\nenvironment_variables: {A: {b: c}}\n", "environment_variables.A"},
		{"env name reserved: PORT", "model_name: m\nenvironment_variables: {PORT: \"1\"}\n", "environment_variables.PORT"},
		{"env name reserved: CUDA_VISIBLE_DEVICES", "model_name: m\nenvironment_variables: {CUDA_VISIBLE_DEVICES: \"0\"}\n", "environment_variables.CUDA_VISIBLE_DEVICES"},
		{"env name reserved: MODELPLANE_", "model_name: m\nenvironment_variables: {MODELPLANE_ENVIRONMENT: x}\n", "environment_variables.MODELPLANE_ENVIRONMENT"},
		{"secrets not a list", "model_name: m\nsecrets: hf_token\n", "secrets"},
		{"secret name with a space", "model_name: m\nsecrets: [\"a b\"]\n", "secrets[0]"},
		{"secret listed twice", "model_name: m\nsecrets: [a, a]\n", "secrets[1]"},
		{"model_metadata not a mapping", "model_name: m\nmodel_metadata: [1]\n", "model_metadata"},
		{"hot_reload not a bool", "model_name: m\nhot_reload: yes please\n", "hot_reload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { requireFieldError(t, tt.yaml, tt.wantField) })
	}
}

func TestParseConfig_RefusesWhatPostgreSQLOrJSONCannotHoldNamingTheKey(t *testing.T) {
	deep := "model_name: m\nmodel_metadata: {a: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}\n"
	tests := []struct {
		name      string
		yaml      string
		wantField string
	}{
		{"NUL in model_metadata", "model_name: m\nmodel_metadata: {note: \"a\\0b\"}\n", "model_metadata.note"},
		{"NUL deep in model_metadata", "model_name: m\nmodel_metadata: {a: [x, {b: \"\\0\"}]}\n", "model_metadata.a[1].b"},
		{"NUL in a model_metadata key", "model_name: m\nmodel_metadata: {\"a\\0\": 1}\n", "model_metadata"},
		{"NUL in an environment variable", "model_name: m\nenvironment_variables: {A: \"x\\0\"}\n", "environment_variables.A"},
		{"NUL in an unknown key's value", "model_name: m\nextra: \"\\0\"\n", "extra"},
		{"NUL in description", "model_name: m\ndescription: \"\\0\"\n", "description"},
		{"nested too deeply", deep, "model_metadata.a" + strings.Repeat("[0]", modelpkg.MaxDepth-2)},
		{"NaN in model_metadata", "model_name: m\nmodel_metadata: {ratio: .nan}\n", "model_metadata.ratio"},
		{"infinite ping interval", "model_name: m\nruntime: {transport: {kind: websocket, ping_interval_seconds: .inf}}\n", "runtime.transport.ping_interval_seconds"},
		{"a key twice in an unknown key's value", "model_name: m\nextra: {a: 1, a: 2}\n", "extra.a"},
		{"a mapping as a key", "model_name: m\nextra: {{}: 1}\n", "extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { requireFieldError(t, tt.yaml, tt.wantField) })
	}
}

func TestParseConfig_KeepsNestingWithinTheLimit(t *testing.T) {
	n := modelpkg.MaxDepth - 2 // the file's mapping and model_metadata's are two levels
	_, err := modelpkg.ParseConfig([]byte("model_name: m\nmodel_metadata: {a: " + strings.Repeat("[", n) + strings.Repeat("]", n) + "}\n"))
	require.NoError(t, err)
}

// requireFieldError parses text and asserts that it is refused with a *FieldError naming
// field, which it returns.
func requireFieldError(t *testing.T, text, field string) *modelpkg.FieldError {
	t.Helper()
	_, err := modelpkg.ParseConfig([]byte(text))
	var fe *modelpkg.FieldError
	require.ErrorAs(t, err, &fe, "want a *FieldError for %q, got %v", text, err)
	assert.Equal(t, field, fe.Field, "field of %q", err)
	assert.NotEmpty(t, fe.Message)
	return fe
}

func make256(c byte) []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestParseConfig_KeepsUnknownKeys(t *testing.T) {
	text := "model_name: m\nexamples_filename: ex.yaml\nresources: {use_gpu: true, accelerator: A10G}\n"
	cfg, err := modelpkg.ParseConfig([]byte(text))
	require.NoError(t, err)
	assert.Equal(t, "A10G", cfg.Resources.GPUType)
	assert.Equal(t, text, cfg.Raw)
}

func TestFieldError_MessageNamesFileAndField(t *testing.T) {
	err := error(&modelpkg.FieldError{Field: "resources.accelerator", Message: "bad"})
	assert.Equal(t, "config.yaml: resources.accelerator: bad", err.Error())
	assert.Equal(t, "config.yaml: not valid", (&modelpkg.FieldError{Message: "not valid"}).Error())
}

func TestConfigJSON_HasParsedValuesAndUnknownKeys(t *testing.T) {
	cfg, err := modelpkg.ParseConfig([]byte("model_name: m\nresources: {accelerator: \"H100:2\"}\nextra: {1: a}\nmodel_metadata: {k: [1, 2]}\n"))
	require.NoError(t, err)
	b, err := cfg.JSON()
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got), "%s", b)
	assert.Equal(t, "m", got["model_name"])
	assert.Equal(t, map[string]any{
		"predict_concurrency": 1.0, "streaming_read_timeout": 60.0, "enable_tracing_data": false,
		"enable_debug_logs": false, "transport": map[string]any{"kind": "http"},
		"health_checks": map[string]any{
			"restart_check_delay_seconds": nil, "restart_threshold_seconds": nil,
			"stop_traffic_threshold_seconds": nil, "startup_threshold_seconds": nil,
		},
	}, got["runtime"], "runtime is Truss's settings with Truss's defaults")
	assert.Equal(t, "model", got["model_module_dir"])
	assert.Equal(t, "Model", got["model_class_name"])
	assert.Equal(t, "/v1/models/model", got["health_path"])
	assert.Equal(t, map[string]any{"1": "a"}, got["extra"], "unknown keys are kept")
	assert.Equal(t, map[string]any{"k": []any{1.0, 2.0}}, got["model_metadata"])
	assert.Equal(t, map[string]any{}, got["environment_variables"])
	assert.Equal(t, []any{}, got["secrets"])
	res := got["resources"].(map[string]any)
	assert.Equal(t, "H100", res["gpu_type"])
	assert.Equal(t, 2.0, res["gpu_count"])
}

func TestParseCPUAndMemory_ConvertQuantities(t *testing.T) {
	cpus := map[string]int64{"1": 1000, "0.5": 500, "500m": 500, "2.25": 2250, "16": 16000}
	for in, want := range cpus {
		got, err := modelpkg.ParseCPU(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, "cpu %q", in)
	}
	mems := map[string]int64{"2Gi": 2 << 30, "512Mi": 512 << 20, "1G": 1e9, "1024": 1024, "1.5Gi": 3 << 29, "100k": 100e3}
	for in, want := range mems {
		got, err := modelpkg.ParseMemory(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, "memory %q", in)
	}
	for _, bad := range []string{"", "1.5m", "m", "1 ", "-1"} {
		_, err := modelpkg.ParseCPU(bad)
		assert.Error(t, err, "cpu %q", bad)
	}
	for _, bad := range []string{"", "2GB", "Gi", "-1Gi", "1e3"} {
		_, err := modelpkg.ParseMemory(bad)
		assert.Error(t, err, "memory %q", bad)
	}
}

func TestReadConfig_MissingFileIsErrNoConfig(t *testing.T) {
	_, err := modelpkg.ReadConfig(t.TempDir())
	assert.True(t, errors.Is(err, modelpkg.ErrNoConfig), "want ErrNoConfig, got %v", err)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("model_name: x\n"), 0o644))
	cfg, err := modelpkg.ReadConfig(dir)
	require.NoError(t, err)
	assert.Equal(t, "x", cfg.ModelName)
}

func TestConfig_MarshalsWithConfigYAMLKeyNames(t *testing.T) {
	cfg, err := modelpkg.ParseConfig([]byte("model_name: m\nresources: {accelerator: \"A100:2\"}\n"))
	require.NoError(t, err)
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, "m", got["model_name"])
	assert.Equal(t, "/v1/models/model:predict", got["predict_path"])
	assert.Equal(t, 2.0, got["resources"].(map[string]any)["gpu_count"])
	assert.NotContains(t, got, "Raw")
}

func TestResources_JSONIsFlatWithConfigYAMLKeys(t *testing.T) {
	b, err := json.Marshal(modelpkg.Resources{})
	require.NoError(t, err)
	assert.JSONEq(t, `{"gpu_count": 0}`, string(b), "a CPU-only replica still says gpu_count 0")

	all := modelpkg.Resources{Accelerator: "H100:1", GPUType: "H100", GPUCount: 1, GPUMemoryGiB: 80,
		MIGProfile: "3g.40gb", CPU: "500m", Memory: "2Gi"}
	b, err = json.Marshal(all)
	require.NoError(t, err)
	assert.JSONEq(t, `{"accelerator": "H100:1", "gpu_type": "H100", "gpu_count": 1, "gpu_memory_gib": 80,
		"mig_profile": "3g.40gb", "cpu": "500m", "memory": "2Gi"}`, string(b))
	var back modelpkg.Resources
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, all, back)
}

func TestConfigFromJSON_IsConfigYAMLsRulesWithYAMLText(t *testing.T) {
	cfg, err := modelpkg.ConfigFromJSON([]byte(`{"model_name": "echo", "resources": {"accelerator": "H100:2", "cpu": 1},
		"environment_variables": {"GREETING": "bonjour", "N": "123"}, "model_metadata": {"big": 1000000, "ratio": 1.5, "tags": ["a", "b"]},
		"truss_key": {"nested": true}}`))
	require.NoError(t, err)
	require.Equal(t, 2, cfg.Resources.GPUCount)
	require.Equal(t, "1", cfg.Resources.CPU)
	require.Equal(t, map[string]string{"GREETING": "bonjour", "N": "123"}, cfg.EnvironmentVariables)
	require.Contains(t, cfg.Raw, "GREETING: bonjour\n", "Raw is block-style YAML")
	require.Contains(t, cfg.Raw, `N: "123"`, "a string that reads as a number stays a string")
	require.NotContains(t, cfg.Raw, "{", "no flow style")

	// The text is config.yaml: it parses to the same config, unknown keys included.
	again, err := modelpkg.ParseConfig([]byte(cfg.Raw))
	require.NoError(t, err)
	require.True(t, again.SameAs(cfg))
	a, err := cfg.JSON()
	require.NoError(t, err)
	b, err := again.JSON()
	require.NoError(t, err)
	require.JSONEq(t, string(a), string(b))
	require.Contains(t, string(a), `"big":1000000`)
	require.Contains(t, string(a), `"truss_key":{"nested":true}`)

	for _, tt := range []struct{ in, field string }{
		{`{"resources": {}}`, "model_name"},
		{`{"model_name": "echo", "resources": {"accelerator": "H100:99"}}`, "resources.accelerator"},
		{`{"model_name": "echo", "environment_variables": {"PORT": "1"}}`, "environment_variables.PORT"},
	} {
		_, err := modelpkg.ConfigFromJSON([]byte(tt.in))
		var fe *modelpkg.FieldError
		require.True(t, errors.As(err, &fe), "%s: %v", tt.in, err)
		require.Equal(t, tt.field, fe.Field, tt.in)
	}
	for _, in := range []string{`[1]`, `"model_name: echo"`, `null`, `{`} {
		_, err := modelpkg.ConfigFromJSON([]byte(in))
		require.Error(t, err, in)
	}
}

func TestConfigSameAs_ComparesWhatRunsTheModel(t *testing.T) {
	parse := func(text string) modelpkg.Config {
		t.Helper()
		cfg, err := modelpkg.ParseConfig([]byte(text))
		require.NoError(t, err)
		return cfg
	}
	base := parse("model_name: echo\nresources:\n  cpu: \"1\"\n")
	require.True(t, base.SameAs(parse("# a comment\nmodel_name: echo\nruntime: python\nresources: {cpu: 1}\nexamples_filename: ex.yaml\n")),
		"defaults, comments, layout and unknown keys do not count")
	require.False(t, base.SameAs(parse("model_name: echo\nresources:\n  cpu: \"2\"\n")))
	require.False(t, base.SameAs(parse("model_name: echo\nresources:\n  cpu: \"1\"\nenvironment_variables: {A: b}\n")))
	require.False(t, base.SameAs(parse("model_name: echo\nresources:\n  cpu: \"1\"\nmodel_metadata: {k: 1}\n")))
}
