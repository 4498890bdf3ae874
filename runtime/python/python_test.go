package python_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/runtime/python"
)

func TestWriteServer_WritesEmbeddedSourceWithMode0644(t *testing.T) {
	dir := t.TempDir()
	path, err := python.WriteServer(dir)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "server.py"), path)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, python.Source(), got)
	assert.Contains(t, string(got), "def main(")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())

	// Writing again replaces the file and leaves no temporary behind.
	_, err = python.WriteServer(dir)
	require.NoError(t, err)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}

func TestInterpreter_PrefersMODELPLANE_PYTHON(t *testing.T) {
	t.Setenv("MODELPLANE_PYTHON", "")
	assert.Equal(t, "python3", python.Interpreter())
	t.Setenv("MODELPLANE_PYTHON", "/opt/py/bin/python3.12")
	assert.Equal(t, "/opt/py/bin/python3.12", python.Interpreter())
	assert.Equal(t, []string{"/opt/py/bin/python3.12", "-u", "/s/server.py", "--package", "/p"},
		python.Command("/s/server.py", "/p"))
}

func TestEnv_CarriesConfigVariablesAndOnlyNamedSecrets(t *testing.T) {
	cfg, err := modelpkg.ParseConfig([]byte("model_name: m\nsecrets: [a, missing]\nenvironment_variables: {K: v}\n"))
	require.NoError(t, err)
	env, err := python.Env(cfg, map[string]string{"a": "1", "b": "2"})
	require.NoError(t, err)
	assert.Equal(t, "v", env["K"])
	assert.JSONEq(t, `{"a": "1"}`, env[python.EnvSecretsJSON])
	var config map[string]any
	require.NoError(t, json.Unmarshal([]byte(env[python.EnvConfigJSON]), &config))
	assert.Equal(t, "m", config["model_name"])
	assert.Equal(t, "/v1/models/model:predict", config["predict_path"])
}

func TestSource_ServesTheControlRouteUnderTheNamesGoUses(t *testing.T) {
	src := string(python.Source())
	for _, name := range []string{python.ReloadPath, python.ControlTokenHeader, python.EnvControlToken} {
		assert.Contains(t, src, `"`+name+`"`, "server.py must use %q, which the agent sends", name)
	}
}
