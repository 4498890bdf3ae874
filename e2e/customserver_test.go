package e2e

import (
	"bufio"
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

// openaiChatArchive uploads examples/models/openai-chat, a Truss docker_server package
// without a base image: it runs on the agent's process runtime.
func openaiChatArchive(t *testing.T, h *harness) string {
	t.Helper()
	var buf bytes.Buffer
	_, err := modelpkg.Pack("../examples/models/openai-chat", &buf)
	require.NoError(t, err)
	a, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	return a.ID
}

// chatChunk is the part of a chat.completion.chunk the test reads.
type chatChunk struct {
	Object  string `json:"object"`
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
}

func TestCustomServer_OpenAIChatStreamsThroughSyncAndPredictReachesItsPredictEndpoint(t *testing.T) {
	h := start(t)
	archive := openaiChatArchive(t, h)
	modelID, dep := h.createModel("openai-chat", archive, false)
	h.promote(modelID, "production", dep)
	r, ok := h.replica(dep)
	require.True(t, ok)
	assert.Equal(t, "process", r.Runtime, "a docker_server without base_image runs on the host")
	assert.Equal(t, "/v1/chat/completions", r.PredictPath)
	assert.Equal(t, "/health", r.HealthPath)

	// Six words, one token each, 50 ms apart: the stream lasts over 300 ms.
	words := "one two three four five six"
	req, err := http.NewRequest(http.MethodPost, h.stack.APIURL+"/models/"+modelID+"/environments/production/sync/v1/chat/completions",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"`+words+`"}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Api-Key "+h.key)
	sent := time.Now()
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))

	var events []string
	var firstAt, lastAt time.Duration
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		require.True(t, strings.HasPrefix(line, "data: "), "an SSE event: %q", line)
		if len(events) == 0 {
			firstAt = time.Since(sent)
		}
		lastAt = time.Since(sent)
		events = append(events, strings.TrimPrefix(line, "data: "))
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, events)
	require.Equal(t, "[DONE]", events[len(events)-1], "the stream ends with [DONE]")
	var text strings.Builder
	for _, e := range events[:len(events)-1] {
		var c chatChunk
		require.NoError(t, json.Unmarshal([]byte(e), &c), e)
		require.Equal(t, "chat.completion.chunk", c.Object)
		require.Len(t, c.Choices, 1)
		text.WriteString(c.Choices[0].Delta.Content)
	}
	assert.Equal(t, words, text.String())
	assert.Len(t, events, 6+3, "a role chunk, one chunk per word, a finish chunk and [DONE]")
	// The first chunk comes through before the server sent the last: the gateway relays each
	// as it comes instead of buffering the answer.
	assert.Greater(t, lastAt-firstAt, 200*time.Millisecond, "first chunk at %s, last at %s", firstAt, lastAt)

	// A predict reaches the custom server's predict_endpoint.
	preq, err := http.NewRequest(http.MethodPost, h.stack.APIURL+"/models/"+modelID+"/production/predict",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hello there"}]}`))
	require.NoError(t, err)
	preq.Header.Set("Authorization", "Api-Key "+h.key)
	pres, err := http.DefaultClient.Do(preq)
	require.NoError(t, err)
	b, _ := io.ReadAll(pres.Body)
	pres.Body.Close()
	require.Equal(t, http.StatusOK, pres.StatusCode, "%s", b)
	var completion struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	require.NoError(t, json.Unmarshal(b, &completion), "%s", b)
	assert.Equal(t, "chat.completion", completion.Object)
	require.Len(t, completion.Choices, 1)
	assert.Equal(t, "hello there", completion.Choices[0].Message.Content)
}

func TestCustomServer_WebsocketTransportIsUpgradedOnItsPredictEndpoint(t *testing.T) {
	h := start(t)
	var buf bytes.Buffer
	_, err := modelpkg.Pack("testdata/websocket-server", &buf)
	require.NoError(t, err)
	a, err := h.api.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	modelID, dep := h.createModel("websocket-server", a.ID, false)
	h.promote(modelID, "production", dep)
	r, ok := h.replica(dep)
	require.True(t, ok)
	assert.Equal(t, "/v1/realtime", r.WebsocketPath, "a websocket custom server takes websockets on its predict_endpoint")

	c := h.dialModel(modelID, "production")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("hello")))
	_, got, err := c.Read(ctx)
	require.NoError(t, err)
	assert.Equal(t, "realtime:hello", string(got))
	require.NoError(t, c.Close(websocket.StatusNormalClosure, "done"))
}
