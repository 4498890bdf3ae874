package workflows_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane/workflows"
)

// historiesDir holds the workflow histories recorded from end-to-end runs by `make histories`
// (see "Workflow changes and replay" in docs/decisions.md).
const historiesDir = "testdata/histories"

func historyFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded history in %s: run make histories", historiesDir)
	return files
}

// TestReplay_RecordedHistories replays every recorded history against the workflows as
// worker registers them: a workflow whose code no longer makes the commands its recorded run
// made fails here with the nondeterminism error, as it would fail the runs in flight when the
// new worker takes them over.
func TestReplay_RecordedHistories(t *testing.T) {
	for _, file := range historyFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			r := sdkworker.NewWorkflowReplayer()
			workflows.Register(r)
			// The error says it all; the replayer's own log would only repeat it.
			quiet := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
			if err := r.ReplayWorkflowHistoryFromJSONFile(quiet, file); err != nil {
				t.Fatalf("%s does not replay on the current workflow code (put the change behind "+
					"workflow.GetVersion, see docs/decisions.md): %v", file, err)
			}
		})
	}
}

// TestReplay_EveryWorkflowHasAHistory makes sure the replay test covers every workflow the
// worker registers, so a new workflow comes with a recorded history.
func TestReplay_EveryWorkflowHasAHistory(t *testing.T) {
	var registered workflowNames
	workflows.Register(&registered)
	require.NotEmpty(t, registered.names)

	recorded := map[string][]string{}
	for _, file := range historyFiles(t) {
		f, err := os.Open(file)
		require.NoError(t, err)
		h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{}) // as the replayer reads it
		f.Close()
		require.NoError(t, err, file)
		require.NotEmpty(t, h.Events, file)
		first := h.Events[0]
		require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, first.GetEventType(), "%s: first event", file)
		name := first.GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName()
		require.Contains(t, registered.names, name, "%s is a history of a workflow the worker does not register", file)
		recorded[name] = append(recorded[name], filepath.Base(file))
	}
	for _, name := range registered.names {
		require.NotEmpty(t, recorded[name], "workflow %s has no recorded history in %s: name it in an e2e test "+
			"with record and in the Makefile's HISTORY_TESTS, then run make histories", name, historiesDir)
	}
}

// workflowNames is a registry that keeps the names workflows are registered under, as
// SDK names them.
type workflowNames struct{ names []string }

func (n *workflowNames) RegisterWorkflow(w any) {
	n.RegisterWorkflowWithOptions(w, workflow.RegisterOptions{})
}

func (n *workflowNames) RegisterWorkflowWithOptions(w any, o workflow.RegisterOptions) {
	name := o.Name
	if name == "" {
		// The SDK's default: the function's name without its package, nor a method value's -fm.
		full := runtime.FuncForPC(reflect.ValueOf(w).Pointer()).Name()
		name = strings.TrimSuffix(full[strings.LastIndex(full, ".")+1:], "-fm")
	}
	if !slices.Contains(n.names, name) {
		n.names = append(n.names, name)
	}
}

func (n *workflowNames) RegisterDynamicWorkflow(any, workflow.DynamicRegisterOptions) {
	n.names = append(n.names, "(dynamic workflow: no history can cover it)")
}
