package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// canaryModel makes a model whose production serves a test model answering with a one-byte
// pad, and a second deployment (not serving) whose answers have a two-byte pad, so every
// answer says which deployment served it. extra are the second's test model arguments.
func canaryModel(t *testing.T, h *harness, promotion map[string]any, extra ...string) (modelID, first, second string) {
	t.Helper()
	modelID, first = h.createModel("canary", testmodelArchive(t, h, "--response-bytes", "1"), false)
	h.promote(modelID, "production", first)
	second = h.newDeployment(modelID, testmodelArchive(t, h, append([]string{"--response-bytes", "2"}, extra...)...))
	code, body := h.call(http.MethodPatch, "/v1/models/"+modelID+"/environments/production",
		map[string]any{"promotion_settings": promotion})
	require.Equal(t, http.StatusOK, code, "%v", body)
	return modelID, first, second
}

// servedBySecond says whether an answer came from the second deployment.
func servedBySecond(s shot) bool { return strings.Contains(s.body, `"pad":"xx"`) }

// sentAfter counts the requests sent over 200 ms after at (when every gateway has the change
// made at at) and of those the ones the second deployment served.
func sentAfter(shots []shot, at time.Time) (after, toSecond int) {
	for _, s := range shots {
		if s.sent.After(at.Add(200 * time.Millisecond)) {
			after++
			if servedBySecond(s) {
				toSecond++
			}
		}
	}
	return after, toSecond
}

// stage is when a promotion stage began (from the workflow's own audit events, which the
// spec-shaped audit log leaves out) and its candidate share.
type stage struct {
	at      time.Time
	percent int
}

func (h *harness) stages(modelID string) []stage {
	h.t.Helper()
	db, err := store.Open(context.Background(), h.stack.Postgres.URL)
	require.NoError(h.t, err)
	defer db.Close()
	var rows []struct {
		At      time.Time `db:"created_at"`
		Percent int       `db:"percent"`
	}
	require.NoError(h.t, db.Select(&rows, `
		SELECT created_at, (details->>'percent_traffic_to_new_version')::int AS percent FROM audit_events
		WHERE model_id = $1 AND action = 'promotion.stage' ORDER BY created_at, id`, modelID))
	out := make([]stage, 0, len(rows))
	for _, r := range rows {
		out = append(out, stage{at: r.At, percent: r.Percent})
	}
	return out
}

// watchPercent records the percentages GET .../environments/production shows until stop.
func (h *harness) watchPercent(modelID string, stop <-chan struct{}) func() []int {
	var mu sync.Mutex
	var seen []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			e, err := h.api.Environment(context.Background(), modelID, "production")
			if err == nil && e.InProgressPromotion != nil && e.InProgressPromotion.Status == modelplane.PromotionRampingUp {
				mu.Lock()
				if n := len(seen); n == 0 || seen[n-1] != e.InProgressPromotion.PercentTrafficToNewVersion {
					seen = append(seen, e.InProgressPromotion.PercentTrafficToNewVersion)
				}
				mu.Unlock()
			}
		}
	}()
	return func() []int { <-done; mu.Lock(); defer mu.Unlock(); return seen }
}

func TestCanary_FullRampUnderLoadKeepsEveryStagesShare(t *testing.T) {
	h := start(t)
	modelID, first, second := canaryModel(t, h, map[string]any{"ramp_up_while_promoting": true, "ramp_up_duration_seconds": 20})
	load := startLoadKeeping(t, h, modelID, 150, true)
	stop := make(chan struct{})
	percents := h.watchPercent(modelID, stop)
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+second+"/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitCurrent(modelID, "production", second, "")
	time.Sleep(time.Second)
	close(stop)
	_, failures := load.stop()
	require.Empty(t, failures)

	seen := percents()
	require.True(t, sort.IntsAreSorted(seen), "the percentage only climbs: %v", seen)
	require.GreaterOrEqual(t, len(seen), 5, "GET environment shows RAMPING_UP climbing: %v", seen)
	stages := h.stages(modelID)
	require.Len(t, stages, 10)
	for i, st := range stages[:9] {
		end := stages[i+1].at
		total, toSecond := 0, 0
		for _, s := range load.shots {
			// A request sent within 100 ms of the change may have met either table.
			if s.sent.After(st.at.Add(100*time.Millisecond)) && s.sent.Before(end) {
				total++
				if servedBySecond(s) {
					toSecond++
				}
			}
		}
		require.Positive(t, total, "stage %d saw requests", i+1)
		share := 100 * float64(toSecond) / float64(total)
		assert.InDelta(t, st.percent, share, 5, "stage %d: %d%% wanted, %.1f%% of %d requests seen", i+1, st.percent, share, total)
	}
	h.waitStatus(modelID, first, "SCALED_TO_ZERO") // the cleanup strategy, not revived by the autoscaler
}

func TestCanary_CancelAtHalfPutsAllTrafficBack(t *testing.T) {
	h := start(t)
	modelID, first, second := canaryModel(t, h, map[string]any{"ramp_up_while_promoting": true, "ramp_up_duration_seconds": 20})
	h.record("promotion-ramp-canceled", contract.PromotionWorkflowID(modelID, "production"))
	load := startLoadKeeping(t, h, modelID, 150, true)
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+second+"/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Eventually(t, func() bool {
		e, err := h.api.Environment(context.Background(), modelID, "production")
		return err == nil && e.InProgressPromotion != nil && e.InProgressPromotion.PercentTrafficToNewVersion >= 50
	}, 60*time.Second, 50*time.Millisecond)
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/production/cancel_promotion", nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, "CANCELED", body["status"])
	canceled := time.Now()
	h.waitCurrent(modelID, "production", first, "")
	h.waitStatus(modelID, second, "SCALED_TO_ZERO")
	time.Sleep(time.Second)
	_, failures := load.stop()
	require.Empty(t, failures)

	after, toSecond := sentAfter(load.shots, canceled)
	require.Positive(t, after)
	assert.Zero(t, toSecond, "after the cancel every request goes to the current deployment")
	code, body = h.call(http.MethodPost, "/v1/models/"+modelID+"/environments/production/pause_promotion", nil)
	require.Equal(t, http.StatusConflict, code, "no promotion is running: %v", body)
}

func TestCanary_AnalysisRollsBackAFailingCandidate(t *testing.T) {
	h := start(t)
	modelID, first, second := canaryModel(t, h, map[string]any{"ramp_up_while_promoting": true, "ramp_up_duration_seconds": 20,
		"canary_analysis": map[string]any{"enabled": true, "min_requests_per_stage": 20}}, "--failure-rate", "0.2")
	load := startLoadKeeping(t, h, modelID, 150, true)
	code, body := h.call(http.MethodPost, "/v1/models/"+modelID+"/deployments/"+second+"/promote", map[string]any{})
	require.Equal(t, http.StatusOK, code, "%v", body)
	h.waitStatus(modelID, second, "SCALED_TO_ZERO")
	h.waitCurrent(modelID, "production", first, "")
	time.Sleep(time.Second)
	_, failures := load.stop()
	require.Empty(t, failures, "only the failing model's own answers may fail")

	code, body = h.call(http.MethodGet, "/v1/models/"+modelID+"/audit_logs?event_type_groups=PROMOTED", nil)
	require.Equal(t, http.StatusOK, code)
	raw, _ := json.Marshal(body["items"])
	assert.Contains(t, string(raw), "MODEL_DEPLOYMENT_PROMOTED", "the model's audit log has the promotion")
	modelFailures := 0
	for _, s := range load.shots {
		if s.status == http.StatusInternalServerError {
			modelFailures++
			assert.True(t, servedBySecond(s) || strings.Contains(s.body, "injected failure"))
		}
	}
	assert.Positive(t, modelFailures, "the candidate failed some requests before it was rolled back")
	stages := h.stages(modelID)
	assert.NotEmpty(t, stages, "the promotion recorded its stages")
	assert.Less(t, len(stages), 10, "rolled back before the last stage")

	db, err := store.Open(context.Background(), h.stack.Postgres.URL)
	require.NoError(t, err)
	defer db.Close()
	var p struct {
		Status string `db:"status"`
		Error  string `db:"error_message"`
	}
	require.NoError(t, db.Get(&p, `SELECT status, error_message FROM promotions
		WHERE model_id = $1 AND candidate_deployment_id = $2`, modelID, second))
	assert.Equal(t, "FAILED", p.Status)
	assert.Contains(t, p.Error, "canary analysis at stage")
	assert.Contains(t, p.Error, "error rate up", "the figures are in error_message")
}
