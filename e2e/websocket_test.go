package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	var c *websocket.Conn
	var err error
	require.Eventually(h.t, func() bool {
		c, err = h.tryDial(modelID, target)
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "no websocket on %s", target)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { c.CloseNow() })
	return c
}

func (h *harness) tryDial(modelID, target string) (*websocket.Conn, error) {
	u := "ws" + strings.TrimPrefix(h.stack.APIURL, "http") + "/models/" + modelID + "/" + target + "/websocket"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Api-Key " + h.key}}})
	if err != nil && res != nil {
		return nil, fmt.Errorf("%s: %w", res.Status, err)
	}
	return c, err
}

type wsEcho struct {
	Echo         string `json:"echo"`
	DeploymentID string `json:"deployment_id"`
}

// wsSay sends text on the websocket and returns the model's answer.
func wsSay(t *testing.T, c *websocket.Conn, text string) wsEcho {
	t.Helper()
	got, err := wsTrySay(c, text)
	require.NoError(t, err)
	return got
}

func wsTrySay(c *websocket.Conn, text string) (wsEcho, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got wsEcho
	if err := c.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		return got, err
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		return got, fmt.Errorf("no answer to %q: %w", text, err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		return got, fmt.Errorf("answer %q: %w", b, err)
	}
	return got, nil
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
	// The switch is done when promote returns; the gateway has it within milliseconds.
	require.Eventually(t, func() bool {
		c, err := h.tryDial(modelID, "production")
		if err != nil {
			return false
		}
		defer c.CloseNow()
		got, err := wsTrySay(c, "new")
		return err == nil && got.DeploymentID == second
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
