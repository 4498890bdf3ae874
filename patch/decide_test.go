package patch_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
)

func mustConfig(t *testing.T, text string) modelpkg.Config {
	t.Helper()
	cfg, err := modelpkg.ParseConfig([]byte(text))
	require.NoError(t, err, "config %q", text)
	return cfg
}

func TestDecide(t *testing.T) {
	const (
		python    = "model_name: m\n"
		h100      = "model_name: m\nresources: {accelerator: H100}\n"
		a100      = "model_name: m\nresources: {accelerator: A100}\n"
		h100x2    = "model_name: m\nresources: {accelerator: \"H100:2\"}\n"
		oneGPU    = "model_name: m\nresources: {gpu_count: 1}\n"
		twoGPUs   = "model_name: m\nresources: {gpu_count: 2}\n"
		mig1      = "model_name: m\nresources: {mig_profile: 1g.10gb}\n"
		mig2      = "model_name: m\nresources: {mig_profile: 2g.20gb}\n"
		cpu1      = "model_name: m\nresources: {cpu: \"1\", memory: 1Gi}\n"
		cpu2      = "model_name: m\nresources: {cpu: \"2\", memory: 1Gi}\n"
		mem2      = "model_name: m\nresources: {cpu: \"1\", memory: 2Gi}\n"
		process   = "model_name: m\ncommand: [./serve]\n"
		docker    = "model_name: m\nimage: repo/m:1\n"
		docker2   = "model_name: m\nimage: repo/m:2\n"
		dockerEnv = "model_name: m\nimage: repo/m:1\nenvironment_variables: {A: \"1\"}\n"
		pythonEnv = "model_name: m\nenvironment_variables: {A: \"1\"}\n"
	)
	hotCode := hot(codeText(patch.ActionUpdate, "model/model.py", "v2"))
	tests := []struct {
		name       string
		prev, next string
		ops        []patch.Op
		wantHow    string
		wantReason string // a part of the full-deploy reason; empty: none
	}{
		{"accelerator type changed", h100, a100, []patch.Op{configOp(a100)}, "", "accelerator"},
		{"accelerator count changed", h100, h100x2, []patch.Op{configOp(h100x2)}, "", "accelerator"},
		{"accelerator added", python, h100, []patch.Op{configOp(h100)}, "", "accelerator"},
		{"gpu_count changed", oneGPU, twoGPUs, []patch.Op{configOp(twoGPUs)}, "", "gpu_count"},
		{"mig_profile changed", mig1, mig2, []patch.Op{configOp(mig2)}, "", "mig_profile"},
		{"cpu changed", cpu1, cpu2, []patch.Op{configOp(cpu2)}, "", "cpu"},
		{"memory changed", cpu1, mem2, []patch.Op{configOp(mem2)}, "", "memory"},
		{"runtime changed", python, process, []patch.Op{configOp(process)}, "", "runtime changed from python to process"},
		{"image changed", docker, docker2, []patch.Op{configOp(docker2)}, "", "image changed"},
		{"docker runtime and a code change", docker, docker, []patch.Op{hotCode}, "", "model/model.py changed, but a docker-runtime replica runs its image"},
		{"docker runtime and a config change only", docker, dockerEnv, []patch.Op{configOp(dockerEnv), envOp(patch.ActionAdd, "A", str("1"))}, patch.HowRestart, ""},
		{"python and all model code hot", python, python, []patch.Op{hotCode, hot(code(patch.ActionAdd, "model/pkg")), hot(code(patch.ActionRemove, "old.py"))}, patch.HowHotReload, ""},
		{"python and one model code op not hot", python, python, []patch.Op{hotCode, codeText(patch.ActionAdd, "x.py", "x")}, patch.HowRestart, ""},
		{"python, hot model code and a config op", python, python + "# c\n", []patch.Op{hotCode, configOp(python + "# c\n")}, patch.HowRestart, ""},
		{"python and a config op alone", python, python + "# c\n", []patch.Op{configOp(python + "# c\n")}, patch.HowRestart, ""},
		{"python and an environment variable", python, pythonEnv, []patch.Op{configOp(pythonEnv), envOp(patch.ActionAdd, "A", str("1"))}, patch.HowRestart, ""},
		{"python and a hot_reload false op", python, python, []patch.Op{codeText(patch.ActionUpdate, "model/model.py", "v2")}, patch.HowRestart, ""},
		{"process runtime and hot model code", process, process, []patch.Op{hotCode}, patch.HowRestart, ""},
		{"no ops", python, python, nil, patch.HowRestart, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			how, reason := patch.Decide(mustConfig(t, tt.prev), mustConfig(t, tt.next), tt.ops)
			if tt.wantReason != "" {
				assert.Empty(t, how, "a full deploy: want no way in place, got %q", how)
				assert.Contains(t, reason, tt.wantReason, "want the reason to say %q, got %q", tt.wantReason, reason)
				return
			}
			assert.Empty(t, reason, "want no full-deploy reason, got %q", reason)
			assert.Equal(t, tt.wantHow, how, "want %s, got %q", tt.wantHow, how)
		})
	}
}
