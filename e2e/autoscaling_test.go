package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/workflows/contract"
)

var (
	testmodelOnce sync.Once
	testmodelBin  string
	testmodelErr  error
)

// testmodelArchive uploads a process-runtime package that runs the Go test model with args.
func testmodelArchive(t *testing.T, h *harness, args ...string) string {
	t.Helper()
	return testmodelArchiveWith(t, h, "", args...)
}

// testmodelArchiveWith is testmodelArchive with more config.yaml lines (extra) after the
// command.
func testmodelArchiveWith(t *testing.T, h *harness, extra string, args ...string) string {
	t.Helper()
	testmodelOnce.Do(func() {
		dir, err := os.MkdirTemp("", "e2e-testmodel-")
		if err != nil {
			testmodelErr = err
			return
		}
		testmodelBin = filepath.Join(dir, "testmodel")
		out, err := exec.Command("go", "build", "-o", testmodelBin, "github.com/modelplane/modelplane/cmd/testmodel").CombinedOutput()
		if err != nil {
			testmodelErr = err
			t.Logf("%s", out)
		}
	})
	require.NoError(t, testmodelErr, "building the test model")
	dir := t.TempDir()
	bin, err := os.ReadFile(testmodelBin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "testmodel"), bin, 0o755))
	command, _ := json.Marshal(append([]string{"./testmodel"}, args...))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"),
		[]byte("model_name: testmodel\ncommand: "+string(command)+"\n"+extra), 0o644))
	var buf bytes.Buffer
	_, err = modelpkg.Pack(dir, &buf)
	require.NoError(t, err)
	a, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	return a.ID
}

// autoscale sets the deployment's autoscaling settings.
func (h *harness) autoscale(modelID, deploymentID string, settings map[string]any) {
	h.t.Helper()
	code, body := h.call(http.MethodPatch, "/v1/models/"+modelID+"/deployments/"+deploymentID+"/autoscaling_settings", settings)
	require.Equal(h.t, http.StatusOK, code, "%v", body)
}

// replicas counts the deployment's live replicas on the agent.
func (h *harness) replicas(deploymentID string) int {
	rs, err := h.agent.Replicas(context.Background())
	require.NoError(h.t, err)
	n := 0
	for _, r := range rs {
		if r.DeploymentID == deploymentID && r.State != "STOPPED" && r.State != "FAILED" {
			n++
		}
	}
	return n
}

func coldStarts(t *testing.T, deploymentID string) uint64 {
	t.Helper()
	m := series(t, "modelplane_cold_start_seconds", map[string]string{"deployment_id": deploymentID})
	return m.GetHistogram().GetSampleCount()
}

func TestAutoscaling_ScaleToZeroThenWakeOnRequest(t *testing.T) {
	h := start(t)
	archive := testmodelArchive(t, h)
	modelID, dep := h.createModel("sleepy", archive, false)
	h.record("deployment-scale-to-zero-wake", contract.DeploymentWorkflowID(dep))
	h.autoscale(modelID, dep, map[string]any{"min_replica": 0, "scale_down_delay": 2, "autoscaling_window": 10})
	target := client.DeploymentTarget(dep)

	// Idle, it goes to zero after the delay.
	h.waitStatus(modelID, dep, "SCALED_TO_ZERO")
	require.Zero(t, h.replicas(dep))

	// The next request wakes it and is answered.
	out, err := h.api.Predict(context.Background(), modelID, target, []byte(`{"after":"sleep"}`))
	require.NoError(t, err)
	assert.Contains(t, string(out), `"output":{"after":"sleep"}`)
	assert.EqualValues(t, 1, coldStarts(t, dep), "the wait is in the cold-start histogram")
	h.waitStatus(modelID, dep, "ACTIVE")

	// Asleep again, fifty requests at once all wake it and are all answered.
	h.waitStatus(modelID, dep, "SCALED_TO_ZERO")
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.api.Predict(context.Background(), modelID, target, []byte(`{}`))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, 1, h.replicas(dep), "one replica woke for all of them")
}

// TestAutoscaling_LoadStepScalesUpAndBackDown steps the load from 1 to 20 concurrent clients
// and back; no request may fail on the way.
func TestAutoscaling_LoadStepScalesUpAndBackDown(t *testing.T) {
	h := start(t)
	archive := testmodelArchive(t, h, "--latency", "200ms")
	modelID, dep := h.createModel("stepped", archive, false)
	h.autoscale(modelID, dep, map[string]any{"min_replica": 1, "max_replica": 4, "concurrency_target": 5,
		"target_utilization_percentage": 100, "autoscaling_window": 10, "scale_down_delay": 3})

	var mu sync.Mutex
	var failures []string
	clients := func(n int, stop <-chan struct{}, wg *sync.WaitGroup) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := h.api.Predict(context.Background(), modelID, client.DeploymentTarget(dep), []byte(`{}`)); err != nil {
						mu.Lock()
						failures = append(failures, err.Error())
						mu.Unlock()
					}
				}
			}()
		}
	}
	var base, step sync.WaitGroup
	stopBase, stopStep := make(chan struct{}), make(chan struct{})
	clients(1, stopBase, &base)
	time.Sleep(2 * time.Second)
	clients(19, stopStep, &step)

	require.Eventually(t, func() bool { return h.replicas(dep) == 4 }, 60*time.Second, 250*time.Millisecond,
		"twenty concurrent requests at five per replica want four replicas")
	h.waitStatus(modelID, dep, "ACTIVE")
	close(stopStep)
	step.Wait()

	require.Eventually(t, func() bool { return h.replicas(dep) == 1 }, 90*time.Second, 250*time.Millisecond,
		"back to one client, it scales back to one replica")
	close(stopBase)
	base.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, failures, "no request fails while the deployment scales")
}

// TestAutoscaling_ScheduleOpenNowWakesTheProductionDeployment gives production a schedule
// whose window is open now, with a floor of one, while its deployment is at zero: a replica
// comes up without any request, and the environment names the schedule in force.
func TestAutoscaling_ScheduleOpenNowWakesTheProductionDeployment(t *testing.T) {
	h := start(t)
	archive := testmodelArchive(t, h)
	modelID, dep := h.createModel("scheduled", archive, false)
	h.promote(modelID, "production", dep)
	h.autoscale(modelID, dep, map[string]any{"min_replica": 0, "scale_down_delay": 0, "autoscaling_window": 10})
	h.waitStatus(modelID, dep, "SCALED_TO_ZERO")
	require.Zero(t, h.replicas(dep))

	// A DAILY window whose end is its start lasts the whole day, every day: open now.
	code, body := h.call(http.MethodPatch, "/v1/models/"+modelID+"/environments/production", map[string]any{
		"autoscaling_schedule_settings": map[string]any{"timezone": "UTC", "schedules": []any{map[string]any{
			"name": "all-day", "enabled": true, "cadence": "DAILY",
			"weekdays":   []string{"SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"},
			"start_hour": 0, "start_minute": 0, "end_hour": 0, "end_minute": 0,
			"autoscaling_settings": map[string]any{"min_replica": 1, "max_replica": 1, "autoscaling_window": nil,
				"scale_down_delay": nil, "concurrency_target": nil, "target_utilization_percentage": nil,
				"target_in_flight_tokens": nil, "max_scale_down_rate": nil},
		}}}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	env := body["environment"].(map[string]any)
	require.Equal(t, dep, env["current_deployment"].(map[string]any)["id"], "production serves the deployment")
	scheduleID := env["autoscaling_schedules"].(map[string]any)["schedules"].([]any)[0].(map[string]any)["id"]

	h.waitStatus(modelID, dep, "ACTIVE")
	require.Eventually(t, func() bool { return h.replicas(dep) == 1 }, 30*time.Second, 100*time.Millisecond,
		"the schedule's min_replica brings a replica up")
	assert.Zero(t, coldStarts(t, dep), "no request woke it")

	code, body = h.call(http.MethodGet, "/v1/models/"+modelID+"/environments/production", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	applied := body["autoscaling_schedules"].(map[string]any)["applied_state"].(map[string]any)
	assert.Equal(t, scheduleID, applied["schedule_id"])
	assert.EqualValues(t, 1, applied["autoscaling_settings"].(map[string]any)["min_replica"])
	assert.EqualValues(t, 0, body["autoscaling_settings"].(map[string]any)["min_replica"],
		"the deployment's own settings are unchanged")
}
