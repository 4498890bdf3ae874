package pyenv_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/pyenv"
	"github.com/modelplane/modelplane/internal/wheel"
)

// wheelhouse writes a wheel of mpgreet 1.0, whose greet() answers "hello from mpgreet".
func wheelhouse(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, err := wheel.Write(dir, "mpgreet", "1.0", map[string]string{
		"mpgreet.py": "def greet():\n    return 'hello from mpgreet'\n",
	})
	require.NoError(t, err)
	return dir
}

func newBuilder(t *testing.T, findLinks string) *pyenv.Builder {
	t.Helper()
	b, err := pyenv.New(pyenv.Config{Dir: filepath.Join(t.TempDir(), "envs"), FindLinks: findLinks, Node: "n1"})
	require.NoError(t, err)
	return b
}

// pipRuns counts the pip installs in the key's build log.
func pipRuns(t *testing.T, b *pyenv.Builder, key string) int {
	t.Helper()
	data, err := os.ReadFile(b.LogPath(key))
	require.NoError(t, err)
	return strings.Count(string(data), "-m pip install")
}

func TestBuild_InstallsTheRequirementsIntoTheEnvironment(t *testing.T) {
	b := newBuilder(t, wheelhouse(t))
	st, err := b.Ensure(context.Background(), pyenv.Request{Requirements: []string{"mpgreet==1.0"}})
	require.NoError(t, err)
	assert.Equal(t, pyenv.Ready, st.State)
	assert.False(t, st.Reused, "a first build is no reuse")
	out, err := exec.Command(filepath.Join(st.Dir, "bin", "python"), "-c", "import mpgreet; print(mpgreet.greet())").CombinedOutput()
	require.NoError(t, err, "importing from the environment: %s", out)
	assert.Equal(t, "hello from mpgreet", strings.TrimSpace(string(out)))
	assert.Contains(t, strings.Join(b.LogTail(st.Key, 50), "\n"), "Successfully installed mpgreet-1.0")
	// Nothing of the build is left but the environment, its lock and its log.
	entries, err := os.ReadDir(filepath.Dir(st.Dir))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{st.Key, st.Key + ".lock", st.Key + ".log"}, names)
}

func TestBuild_SecondBuildOfTheSameSetIsReusedWithoutPip(t *testing.T) {
	b := newBuilder(t, wheelhouse(t))
	req := pyenv.Request{Requirements: []string{"mpgreet==1.0"}}
	first, err := b.Ensure(context.Background(), req)
	require.NoError(t, err)
	second, err := b.Start(context.Background(), pyenv.Request{Requirements: []string{"  mpgreet==1.0 "}})
	require.NoError(t, err)
	assert.Equal(t, pyenv.Status{Key: first.Key, State: pyenv.Ready, Reused: true, Dir: first.Dir}, second)
	assert.Equal(t, 1, pipRuns(t, b, first.Key))

	// Another agent process on the same directory finds it too.
	other, err := pyenv.New(pyenv.Config{Dir: filepath.Dir(first.Dir), FindLinks: "ignored", Node: "n1"})
	require.NoError(t, err)
	k, err := other.Key(context.Background(), req)
	require.NoError(t, err)
	assert.NotEqual(t, first.Key, k, "the find-links are part of the key")
}

func TestBuild_ConcurrentBuildsOfTheSameSetRunPipOnce(t *testing.T) {
	wh := wheelhouse(t)
	b := newBuilder(t, wh)
	req := pyenv.Request{Requirements: []string{"mpgreet==1.0"}}
	var wg sync.WaitGroup
	results := make([]pyenv.Status, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = b.Ensure(context.Background(), req)
		}()
	}
	wg.Wait()
	for i := range results {
		require.NoError(t, errs[i])
		assert.Equal(t, pyenv.Ready, results[i].State)
		assert.Equal(t, results[0].Dir, results[i].Dir)
	}
	assert.Equal(t, 1, pipRuns(t, b, results[0].Key))
}

func TestBuild_FailingRequirementFailsWithPipsErrorAndLeavesNothingBehind(t *testing.T) {
	b := newBuilder(t, wheelhouse(t))
	st, err := b.Ensure(context.Background(), pyenv.Request{Requirements: []string{"nosuchpkg==1.0"}})
	require.Error(t, err)
	assert.Equal(t, pyenv.Failed, st.State)
	assert.Contains(t, err.Error(), "No matching distribution found for nosuchpkg==1.0")
	assert.Contains(t, err.Error(), "installing the requirements failed on node n1")
	_, statErr := os.Stat(b.Path(st.Key))
	assert.True(t, os.IsNotExist(statErr), "a failed build leaves no environment")
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(b.Path(st.Key)), "*.tmp-*"))
	assert.Empty(t, matches, "a failed build leaves no temporary directory")
	got, ok := b.Status(st.Key)
	require.True(t, ok)
	assert.Equal(t, pyenv.Failed, got.State)

	// The builder keeps working: a good set builds.
	good, err := b.Ensure(context.Background(), pyenv.Request{Requirements: []string{"mpgreet==1.0"}})
	require.NoError(t, err)
	assert.Equal(t, pyenv.Ready, good.State)
}

func TestBuild_FailedBuildIsBuiltAgainWhenAskedAgain(t *testing.T) {
	b := newBuilder(t, wheelhouse(t))
	req := pyenv.Request{Requirements: []string{"nosuchpkg==1.0"}}
	_, err := b.Ensure(context.Background(), req)
	require.Error(t, err)
	st, err := b.Ensure(context.Background(), req)
	require.Error(t, err)
	assert.Equal(t, 1, pipRuns(t, b, st.Key), "the log is the latest build's")
}

func TestBuild_InterpreterNotInstalledNamesPythonVersion(t *testing.T) {
	b := newBuilder(t, wheelhouse(t))
	for _, v := range []string{"py37", "py399"} {
		interp := "python3." + strings.TrimPrefix(v, "py3")
		_, err := b.Ensure(context.Background(), pyenv.Request{Interpreter: interp, PythonVersion: v, Requirements: []string{"mpgreet==1.0"}})
		require.Error(t, err, v)
		assert.Contains(t, err.Error(), "python_version "+v+": "+interp+" is not installed on node n1")
	}
}

func TestLines_DropsBlankLinesAndComments(t *testing.T) {
	assert.Equal(t, []string{"a==1", "-r other.txt", "b"}, pyenv.Lines("a==1\n\n# pinned\n  -r other.txt  \nb\n"))
}
