package python_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const asyncEchoModel = `
class Model:
    def predict(self, model_input):
        return model_input

    async def websocket(self, ws):
        while True:
            text = await ws.receive_text()
            if text == "bytes":
                await ws.send_bytes(await ws.receive_bytes())
            elif text == "bye":
                await ws.close(4000, "asked to")
                return
            elif text == "boom":
                raise RuntimeError("boom")
            else:
                await ws.send_text("echo:" + text)
`

const syncEchoModel = `
class Model:
    def predict(self, model_input):
        return model_input

    def websocket(self, ws):
        while True:
            ws.send_json({"got": ws.receive_json()})
`

func dialServer(t *testing.T, s *server) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/websocket", nil)
	if c != nil {
		c.SetReadLimit(1 << 20)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, res, err
}

func roundTrip(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg string) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, typ, []byte(msg)))
	gotType, got, err := c.Read(ctx)
	require.NoError(t, err)
	return gotType, string(got)
}

func TestServer_WebsocketAsyncMethodEchoes(t *testing.T) {
	s := startServer(t, writePackage(t, plainConfig, asyncEchoModel), nil)
	s.waitFor(t, "/v1/models/model", 200, 10*time.Second)
	c, _, err := dialServer(t, s)
	require.NoError(t, err)
	typ, got := roundTrip(t, c, websocket.MessageText, "hello")
	assert.Equal(t, websocket.MessageText, typ)
	assert.Equal(t, "echo:hello", got)

	// Long messages, in frames of 16-bit and 64-bit lengths, and binary ones.
	long := strings.Repeat("é", 40000)
	_, got = roundTrip(t, c, websocket.MessageText, long)
	assert.Equal(t, "echo:"+long, got)
	ctx := context.Background()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("bytes")))
	typ, got = roundTrip(t, c, websocket.MessageBinary, "\x00\xff\x10")
	assert.Equal(t, websocket.MessageBinary, typ)
	assert.Equal(t, "\x00\xff\x10", got)

	// A pong is read by a concurrent Read, as the client library wants.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping(pctx) }()
	time.Sleep(50 * time.Millisecond)
	_, got = roundTrip(t, c, websocket.MessageText, "after ping")
	assert.Equal(t, "echo:after ping", got)
	require.NoError(t, <-pinged, "pings are answered")

	// The model closes with its own code.
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("bye")))
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	require.True(t, errors.As(err, &ce), "a close frame ends the websocket, got %v", err)
	assert.Equal(t, websocket.StatusCode(4000), ce.Code)
	assert.Equal(t, "asked to", ce.Reason)

	// A client that closes gets its close answered, and the server goes on serving.
	c2, _, err := dialServer(t, s)
	require.NoError(t, err)
	require.NoError(t, c2.Close(websocket.StatusNormalClosure, "done"))
	code, body := s.predict(t, `{"still":"here"}`)
	assert.Equal(t, 200, code, body)
}

func TestServer_WebsocketModelErrorClosesWith1011(t *testing.T) {
	s := startServer(t, writePackage(t, plainConfig, asyncEchoModel), nil)
	s.waitFor(t, "/v1/models/model", 200, 10*time.Second)
	c, _, err := dialServer(t, s)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("boom")))
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	require.True(t, errors.As(err, &ce), "got %v", err)
	assert.Equal(t, websocket.StatusInternalError, ce.Code)
}

func TestServer_WebsocketSyncMethodGetsBlockingCalls(t *testing.T) {
	s := startServer(t, writePackage(t, plainConfig, syncEchoModel), nil)
	s.waitFor(t, "/v1/models/model", 200, 10*time.Second)
	c, _, err := dialServer(t, s)
	require.NoError(t, err)
	_, got := roundTrip(t, c, websocket.MessageText, `{"a":1}`)
	assert.JSONEq(t, `{"got":{"a":1}}`, got)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

func TestServer_WebsocketRefusedWithoutMethodOrUpgrade(t *testing.T) {
	s := startServer(t, writePackage(t, plainConfig, "class Model:\n    def predict(self, x):\n        return x\n"), nil)
	s.waitFor(t, "/v1/models/model", 200, 10*time.Second)
	_, res, err := dialServer(t, s)
	require.Error(t, err)
	require.NotNil(t, res)
	assert.Equal(t, http.StatusNotFound, res.StatusCode, "a model without websocket answers 404")

	e := startServer(t, writePackage(t, plainConfig, asyncEchoModel), nil)
	e.waitFor(t, "/v1/models/model", 200, 10*time.Second)
	code, body := e.get(t, "/websocket")
	assert.Equal(t, http.StatusUpgradeRequired, code, body)
}
