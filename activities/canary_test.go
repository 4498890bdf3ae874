package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

func TestJudgeStage(t *testing.T) {
	c := settings.DefaultPromotionSettings().CanaryAnalysis // +1 point of errors, 1.5x p99
	ok := modelplane.Figures{Completed: 1000, Errors: 5, P99: 100 * time.Millisecond}
	for _, tt := range []struct {
		name   string
		cand   modelplane.Figures
		breach bool
		why    string
	}{
		{"as good", ok, false, ""},
		{"errors up by less than allowed", modelplane.Figures{Completed: 100, Errors: 1, P99: 100 * time.Millisecond}, false, ""},
		{"errors up by more", modelplane.Figures{Completed: 100, Errors: 20, P99: 100 * time.Millisecond}, true, "error rate up 19.5 points"},
		{"p99 at the limit", modelplane.Figures{Completed: 100, P99: 150 * time.Millisecond}, false, ""},
		{"p99 over it", modelplane.Figures{Completed: 100, P99: 200 * time.Millisecond}, true, "p99 latency 2.00x"},
	} {
		breach, why := activities.JudgeStage(c, tt.cand, ok)
		require.Equal(t, tt.breach, breach, tt.name)
		require.Contains(t, why, tt.why, tt.name)
		require.Contains(t, why, "current 1000 requests", "the figures are in the reason")
	}
}

func TestAnalyzeStage_ReadsBothDeploymentsFiguresOverTheStage(t *testing.T) {
	f := newPromoFixture(t)
	ctx := context.Background()
	stage := time.Now().Add(-time.Minute).Truncate(time.Second)
	var samples []store.LoadSample
	buckets := func(fast, slow int64) pq.Int64Array {
		b := make(pq.Int64Array, len(store.LatencyBounds)+1)
		b[store.LatencyBucket(10*time.Millisecond)] += fast
		b[store.LatencyBucket(2*time.Second)] += slow
		return b
	}
	for i := range 10 {
		at := stage.Add(time.Duration(i) * time.Second)
		samples = append(samples,
			store.LoadSample{DeploymentID: f.prev.ID, GatewayID: "g", At: at, Requests: 9, Completed: 9, LatencyBuckets: buckets(9, 0)},
			store.LoadSample{DeploymentID: f.pub.ID, GatewayID: "g", At: at, Requests: 3, Completed: 3, Errors: 1, LatencyBuckets: buckets(2, 1)})
	}
	require.NoError(t, store.InsertLoadSamples(ctx, f.db, samples))
	analysis := settings.DefaultPromotionSettings().CanaryAnalysis
	v, err := f.env.ExecuteActivity(f.acts.AnalyzeStage, contract.AnalyzeStageInput{
		CandidateID: f.pub.ID, CurrentID: f.prev.ID, From: stage, To: stage.Add(10 * time.Second), Analysis: analysis})
	require.NoError(t, err)
	var res contract.AnalyzeStageResult
	require.NoError(t, v.Get(&res))
	require.Equal(t, 30, res.Candidate.Completed)
	require.Equal(t, 90, res.Current.Completed)
	require.True(t, res.Enough)
	require.True(t, res.Breach, "a third of the candidate's requests failed: %s", res.Reason)
	require.Contains(t, res.Reason, "error rate up 33.3 points")

	analysis.MinRequestsPerStage = 31
	v, err = f.env.ExecuteActivity(f.acts.AnalyzeStage, contract.AnalyzeStageInput{
		CandidateID: f.pub.ID, CurrentID: f.prev.ID, From: stage, To: stage.Add(10 * time.Second), Analysis: analysis})
	require.NoError(t, err)
	require.NoError(t, v.Get(&res))
	require.False(t, res.Enough)
	require.False(t, res.Breach, "too few requests judge nothing")
}
