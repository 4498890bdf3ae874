//go:build cluster

package cluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/modelpkg"
)

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// liveReplicas lists the deployment's replicas that the record says live, sorted.
func liveReplicas(t *testing.T, db *sqlx.DB, deploymentID string) []string {
	t.Helper()
	var ids []string
	require.NoError(t, db.Select(&ids, `SELECT id FROM replicas WHERE deployment_id = $1 AND state NOT IN ('STOPPED', 'FAILED') ORDER BY id`, deploymentID))
	return ids
}

// waitReplicas waits until the deployment has n replicas, all READY.
func waitReplicas(t *testing.T, db *sqlx.DB, deploymentID string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var live, ready int
		err := db.QueryRow(`SELECT count(*), count(*) FILTER (WHERE state = 'READY') FROM replicas
			WHERE deployment_id = $1 AND state NOT IN ('STOPPED', 'FAILED')`, deploymentID).Scan(&live, &ready)
		return err == nil && live == n && ready == n
	}, 3*time.Minute, 250*time.Millisecond, "deployment %s reaches %d ready replicas", deploymentID, n)
}

func deploymentStatus(t *testing.T, db *sqlx.DB, id string) modelplane.DeploymentStatus {
	t.Helper()
	var s modelplane.DeploymentStatus
	_ = db.Get(&s, `SELECT status FROM deployments WHERE id = $1`, id)
	return s
}

// server names the deployment an answer of the test model came from by its pad's length.
func server(body []byte) string {
	var a struct {
		Pad string `json:"pad"`
	}
	if json.Unmarshal(body, &a) != nil {
		return "?"
	}
	return fmt.Sprintf("v%d", len(a.Pad))
}

// createFromPresigned makes a new deployment of modelID from dir the way Baseten's clients
// do: prepare_model_upload, a PUT of the package to the presigned URL with no credentials,
// then the deployment naming the upload's key. It returns the deployment's ID.
func createFromPresigned(t *testing.T, a *api, modelID, dir string) string {
	t.Helper()
	text, err := os.ReadFile(dir + "/config.yaml")
	require.NoError(t, err)
	cfg, err := modelpkg.ParseConfig(text)
	require.NoError(t, err)
	cfgJSON, err := cfg.JSON()
	require.NoError(t, err)
	payload := map[string]any{"config": json.RawMessage(cfgJSON), "raw_config": string(text)}
	var prep apiv1.PrepareModelUploadV1
	a.call(http.MethodPost, "/v1/prepare_model_upload", map[string]any{"model_id": modelID, "deployment": payload}, &prep)
	require.NotNil(t, prep.UploadURL)
	require.NotNil(t, prep.S3Key)
	require.False(t, strings.Contains(*prep.UploadURL, "/v1/uploads/"), "with S3 the upload goes to the store: %s", *prep.UploadURL)
	var pkg bytes.Buffer
	_, err = modelpkg.Pack(dir, &pkg)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPut, *prep.UploadURL, &pkg)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "PUT to the presigned URL")
	var created apiv1.CreatedV1
	a.call(http.MethodPost, "/v1/models/"+modelID+"/deployments", map[string]any{"source": map[string]any{
		"kind": "model_archive", "s3_key": *prep.S3Key, "deployment": payload}}, &created)
	return created.Deployment.ID
}

// summary prints what the cluster test ran and what came of it.
func summary(f *fleet, load *tally, queued, deliveredOnce, liveOnAgents int, usage apiv1.UsageV1) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n==== cluster test summary (%s)\n", time.Since(f.t0).Round(time.Second))
	roles := map[string]int{}
	starts := 0
	for _, p := range f.procs {
		roles[p.role]++
		starts += p.starts
	}
	fmt.Fprintf(&b, "processes: %d temporal server, %d api, %d worker, %d gateway, %d agent; PostgreSQL and SeaweedFS besides; %d process starts in all\n",
		roles["temporal"], roles["api"], roles["worker"], roles["gateway"], roles["agent"], starts)
	fmt.Fprintf(&b, "timeline:\n")
	for _, k := range f.kills {
		fmt.Fprintf(&b, "  %s\n", k)
	}
	load.mu.Lock()
	fmt.Fprintf(&b, "sync requests: %d sent, %d answered 200 (%d by v1, %d by v2), %d sent to the other gateway after a refused connection\n",
		load.sent, load.ok, load.byServer["v1"], load.byServer["v2"], load.rerouted)
	fmt.Fprintf(&b, "failed: %d in flight on a killed gateway", load.inFlightOnKilled)
	for cause, n := range load.failed {
		fmt.Fprintf(&b, "; %d %s", n, cause)
	}
	load.mu.Unlock()
	fmt.Fprintf(&b, "\nasync requests: %d queued, %d ended with one webhook delivery ID\n", queued, deliveredOnce)
	fmt.Fprintf(&b, "replicas live on agents at the end: %d; usage: %.0f replica-seconds, %.0f GPU-seconds in %d rows\n",
		liveOnAgents, usage.Totals.ReplicaSeconds, usage.Totals.GPUSeconds, len(usage.Rows))
	fmt.Print(b.String())
}
