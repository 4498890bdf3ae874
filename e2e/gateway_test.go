package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/client"
)

// predictEcho predicts through the stack's gateway and returns what the echo model echoed.
func (h *harness) predictEcho(modelID string, t client.Target, input string) (any, error) {
	b, err := h.api.Predict(context.Background(), modelID, t, []byte(input))
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("answer %q: %w", b, err)
	}
	return out["echo"], nil
}

// promote promotes a deployment to an environment and waits until it serves there.
func (h *harness) promote(modelID, env, deploymentID string) {
	h.t.Helper()
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/"+env+"/promote", map[string]any{"deployment_id": deploymentID})
	require.Equal(h.t, http.StatusOK, code, "%v", body)
	h.waitCurrent(modelID, env, deploymentID, "")
}

// newDeployment pushes the archive as another deployment of the model and waits for it.
func (h *harness) newDeployment(modelID, archive string) string {
	h.t.Helper()
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{
		"source": map[string]any{"kind": "model_archive", "archive_id": archive}})
	require.Equal(h.t, http.StatusOK, code, "%v", body)
	id := body["deployment"].(map[string]any)["id"].(string)
	h.waitStatus(modelID, id, "ACTIVE")
	return id
}

func TestGateway_EveryTargetAnswersAndDeactivatedIs404(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	modelID, dev := h.createModel("echo-gateway", archive, true)
	prod, staging, loose := h.newDeployment(modelID, archive), h.newDeployment(modelID, archive), h.newDeployment(modelID, archive)
	h.promote(modelID, "production", prod)
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/environments", map[string]any{"name": "staging"})
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.promote(modelID, "staging", staging)

	for _, target := range []client.Target{client.ProductionTarget(), client.EnvironmentTarget("staging"),
		client.DevelopmentTarget(), client.DeploymentTarget(loose), client.DeploymentTarget(dev)} {
		var got any
		require.Eventually(t, func() bool {
			var err error
			got, err = h.predictEcho(modelID, target, `{"text":"hi"}`)
			return err == nil
		}, 10*time.Second, 20*time.Millisecond, "predict on %s", target)
		assert.Equal(t, map[string]any{"text": "hi"}, got, "predict on %s", target)
	}

	// Deactivating answers 404 from the moment the API has answered, not once replicas stop.
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+loose+"/deactivate", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	deactivated := time.Now()
	var err error
	require.Eventually(t, func() bool {
		_, err = h.predictEcho(modelID, client.DeploymentTarget(loose), `{}`)
		return client.IsStatus(err, http.StatusNotFound)
	}, 2*time.Second, 5*time.Millisecond)
	assert.Less(t, time.Since(deactivated), 500*time.Millisecond)
	assert.Contains(t, err.Error(), "deactivated")

	_, err = h.predictEcho("zzzzzzzz", client.ProductionTarget(), `{}`)
	assert.True(t, client.IsStatus(err, http.StatusNotFound), "unknown model: %v", err)
}

// TestGateway_PromotionUnderLoadLosesNothing promotes a new deployment to production while a
// client sends 200 requests a second, and counts every answer.
func TestGateway_PromotionUnderLoadLosesNothing(t *testing.T) {
	h := start(t)
	archive := echoArchive(t, h)
	modelID, first := h.createModel("echo-under-load", archive, false)
	h.promote(modelID, "production", first)
	second := h.newDeployment(modelID, archive)

	load := startLoad(t, h, modelID, 200)
	began := time.Now()
	time.Sleep(time.Second)
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+second+"/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitCurrent(modelID, "production", second, "")
	// The previous deployment is scaled to zero: its replica drains, then stops.
	h.waitStatus(modelID, first, "SCALED_TO_ZERO")
	require.Eventually(t, func() bool { _, ok := h.replica(first); return !ok }, 30*time.Second, 100*time.Millisecond)
	time.Sleep(time.Second)
	sent, failures := load.stop()
	ran := time.Since(began)

	require.Empty(t, failures, "failed requests during the promotion (of %d)", sent)
	require.GreaterOrEqual(t, float64(sent), 0.8*200*ran.Seconds(), "the load kept its rate for the whole promotion (%s)", ran)
	servedFirst, servedSecond := servedBy(t, first), servedBy(t, second)
	assert.Positive(t, servedFirst, "the previous deployment served until the switch")
	assert.Positive(t, servedSecond, "the new deployment served after it")
	assert.EqualValues(t, sent, servedFirst+servedSecond, "every request counted once, by the deployment that served it")
}

// series returns the gateway's series of the metric whose labels include want, from the
// process's default registry (the dev stack registers there); nil when there is none.
func series(t *testing.T, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// servedBy reads how many requests the deployment answered with 200, from the gateway's
// metrics.
func servedBy(t *testing.T, deploymentID string) int {
	t.Helper()
	m := series(t, "modelplane_inference_requests_total", map[string]string{"deployment_id": deploymentID, "status_code": "200"})
	return int(m.GetCounter().GetValue())
}

// load sends predictions to production at a fixed rate from its own goroutines, so a slow
// answer does not slow the rate down.
type load struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	sent     atomic.Int64
	mu       sync.Mutex
	failures []string
	// shots are every answer, when kept.
	keep  bool
	shots []shot
}

// shot is one request of the load: when it left, and what came back.
type shot struct {
	sent   time.Time
	status int
	body   string
}

func startLoad(t *testing.T, h *harness, modelID string, perSecond int) *load {
	t.Helper()
	return startLoadKeeping(t, h, modelID, perSecond, false)
}

// startLoadKeeping is startLoad that also keeps every answer when keep is set; a 5xx the
// model itself sent is then kept rather than counted as a failure.
func startLoadKeeping(t *testing.T, h *harness, modelID string, perSecond int, keep bool) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, keep: keep}
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	url := h.stack.APIURL + "/models/" + modelID + "/production/predict"
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.sent.Add(1)
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"text":"load"}`))
				req.Header.Set("Authorization", "Api-Key "+h.key)
				sent := time.Now()
				res, err := httpc.Do(req)
				if err != nil {
					l.fail(err.Error())
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				modelFailure := res.StatusCode == http.StatusInternalServerError && strings.Contains(string(b), "injected failure")
				if res.StatusCode != http.StatusOK && !(l.keep && modelFailure) {
					l.fail(fmt.Sprintf("%d %s", res.StatusCode, b))
				}
				if l.keep {
					l.mu.Lock()
					l.shots = append(l.shots, shot{sent: sent, status: res.StatusCode, body: string(b)})
					l.mu.Unlock()
				}
			}()
		}
	}()
	return l
}

func (l *load) fail(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 20 {
		l.failures = append(l.failures, msg)
	}
}

// stop ends the load, waits for the answers and returns how many were sent and up to 20
// failures.
func (l *load) stop() (int, []string) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.sent.Load()), l.failures
}
