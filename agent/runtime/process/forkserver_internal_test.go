package process

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/runtime"
)

func TestCollectReport_RecordsOnlyModuleNamesAndIgnoresAnUnreadableReport(t *testing.T) {
	fs := &forkServers{agentID: "agent-1", log: slog.Default(), dirs: map[string]*forkDir{}}
	t.Cleanup(fs.stopAll)
	dir := t.TempDir()
	report := filepath.Join(t.TempDir(), importsReportFile)
	p := runtime.Prewarm{Dir: filepath.Join(dir, "fs")}
	require.NoError(t, os.MkdirAll(p.Dir, 0o700))
	done := make(chan struct{})

	require.NoError(t, os.WriteFile(report, []byte(`["torch", "../../etc", "a.b", "", "numpy"]`), 0o600))
	// An interpreter that does not exist: the fork server the new modules call for fails
	// to start, which only costs warm starts.
	fs.collectReport("/nonexistent/python", p, report, done, nil)
	require.Equal(t, []string{"numpy", "torch"}, readLearned(p.Dir), "only top-level module names are learned")

	require.NoError(t, os.WriteFile(report, []byte(`not json`), 0o600))
	fs.collectReport("/nonexistent/python", p, report, done, nil)
	require.Equal(t, []string{"numpy", "torch"}, readLearned(p.Dir), "an unreadable report changes nothing")

	// A replica that ended before it reported teaches nothing; one that reported before it
	// ended does.
	require.NoError(t, os.Remove(report))
	close(done)
	fs.collectReport("/nonexistent/python", p, report, done, nil)
	require.Equal(t, []string{"numpy", "torch"}, readLearned(p.Dir))
	require.NoError(t, os.WriteFile(report, []byte(`["transformers"]`), 0o600))
	fs.collectReport("/nonexistent/python", p, report, done, nil)
	require.Equal(t, []string{"numpy", "torch", "transformers"}, readLearned(p.Dir))
}
