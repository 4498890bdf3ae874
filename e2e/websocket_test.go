package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
)

func websocketEchoArchive(t *testing.T, h *harness) string {
	t.Helper()
	var buf bytes.Buffer
	_, err := modelpkg.Pack("../examples/models/websocket-echo", &buf)
	require.NoError(t, err)
	a, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	return a.ID
}

// dialModel opens a websocket on a target of the model through the stack's gateway, retrying
// while the target's replica is not ready yet.
func (h *harness) dialModel(modelID, target string) *websocket.Conn {
	h.t.Helper()
	u := "ws" + strings.TrimPrefix(h.stack.APIURL, "http") + "/models/" + modelID + "/" + target + "/websocket"
	var c *websocket.Conn
	var last string
	require.Eventually(h.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var res *http.Response
		var err error
		c, res, err = websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Api-Key " + h.key}}})
		if err != nil {
			last = err.Error()
			if res != nil {
				last = res.Status
			}
		}
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "no websocket on %s: %s", target, last)
	h.t.Cleanup(func() { c.CloseNow() })
	return c
}

type wsEcho struct {
	Echo         string `json:"echo"`
	DeploymentID string `json:"deployment_id"`
}

// wsSay sends text on the websocket and returns the model's answer.
func wsSay(t *testing.T, c *websocket.Conn, text string) wsEcho {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(text)))
	_, b, err := c.Read(ctx)
	require.NoError(t, err, "no answer to %q", text)
	var got wsEcho
	require.NoError(t, json.Unmarshal(b, &got), "answer %q", b)
	return got
}

func TestWebsocket_EveryTargetEchoesSyncReachesTheServerAndPromotionDrains(t *testing.T) {
	h := start(t)
	archive := websocketEchoArchive(t, h)
	modelID, dev := h.createModel("websocket-echo", archive, true)
	first := h.newDeployment(modelID, archive)
	h.promote(modelID, "production", first)

	for target, want := range map[string]string{
		"production": first, "environments/production": first, "development": dev, "deployment/" + first: first,
	} {
		c := h.dialModel(modelID, target)
		assert.Equal(t, wsEcho{"hi " + target, want}, wsSay(t, c, "hi "+target), "websocket on %s", target)
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	}

	// /sync passes the path through to the model server: here its own predict path.
	req, err := http.NewRequest(http.MethodPost, h.stack.APIURL+"/models/"+modelID+"/production/sync/v1/models/model:predict?x=1",
		strings.NewReader(`{"text":"through sync"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Api-Key "+h.key)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", b)
	assert.JSONEq(t, `{"echo":{"text":"through sync"},"deployment_id":"`+first+`"}`, string(b))

	// A websocket open on production when a promotion switches it keeps working until its
	// client closes it; new websockets go to the promoted deployment.
	old := h.dialModel(modelID, "production")
	assert.Equal(t, first, wsSay(t, old, "before").DeploymentID)
	second := h.newDeployment(modelID, archive)
	h.promote(modelID, "production", second)
	require.Eventually(t, func() bool {
		c := h.dialModel(modelID, "production")
		defer c.CloseNow()
		return wsSay(t, c, "new").DeploymentID == second
	}, 30*time.Second, 200*time.Millisecond, "new websockets never reached the promoted deployment")
	assert.Equal(t, wsEcho{"after the switch", first}, wsSay(t, old, "after the switch"),
		"the open websocket stays on the previous deployment while it drains")
	require.NoError(t, old.Close(websocket.StatusNormalClosure, "done"))
	// With its websocket closed, the previous deployment drains and scales to zero.
	require.Eventually(t, func() bool {
		d, err := h.api.Deployment(context.Background(), modelID, first)
		return err == nil && d.ActiveReplicaCount == 0
	}, 60*time.Second, 200*time.Millisecond, "the previous deployment never scaled down after its websocket closed")
}
