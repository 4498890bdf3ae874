package client_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/client"
)

// gatewayRequest is what the fake gateway saw of one request.
type gatewayRequest struct {
	method, path, auth, contentType, accept, body string
}

// fakeGateway serves handler after recording each request on the returned channel.
func fakeGateway(t *testing.T, handler http.HandlerFunc) (*httptest.Server, <-chan gatewayRequest) {
	t.Helper()
	seen := make(chan gatewayRequest, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- gatewayRequest{method: r.Method, path: r.URL.EscapedPath(), auth: r.Header.Get("Authorization"),
			contentType: r.Header.Get("Content-Type"), accept: r.Header.Get("Accept"), body: string(b)}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func TestPredict_EachTargetPostsTheBodyAsIsToItsGatewayPath(t *testing.T) {
	srv, seen := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "answer to "+r.URL.Path)
	})
	c := client.New(srv.URL+"/", "mp_key")
	body := []byte(`{"prompt": "hi", "n": [1, 2]}`)
	for _, tc := range []struct {
		target client.Target
		path   string
		name   string
	}{
		{client.ProductionTarget(), "/models/q4z8m2xw/production/predict", "production"},
		{client.Target{}, "/models/q4z8m2xw/production/predict", "production"},
		{client.EnvironmentTarget("staging"), "/models/q4z8m2xw/environments/staging/predict", "environment staging"},
		{client.DevelopmentTarget(), "/models/q4z8m2xw/development/predict", "development"},
		{client.DeploymentTarget("d1d2d3d4"), "/models/q4z8m2xw/deployment/d1d2d3d4/predict", "deployment d1d2d3d4"},
		// A name with "/" stays one segment instead of reaching another route.
		{client.EnvironmentTarget("a/b"), "/models/q4z8m2xw/environments/a%2Fb/predict", "environment a/b"},
	} {
		out, err := c.Predict(context.Background(), "q4z8m2xw", tc.target, body)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.name, tc.target.String())
		got := <-seen
		require.Equal(t, gatewayRequest{method: http.MethodPost, path: tc.path, auth: "Api-Key mp_key",
			contentType: "application/json", body: string(body)}, got, tc.name)
		require.Equal(t, "answer to "+strings.ReplaceAll(tc.path, "%2F", "/"), string(out), tc.name)
	}
}

func TestPredict_EmptyTargetNameIsRefusedWithoutARequest(t *testing.T) {
	srv, seen := fakeGateway(t, func(http.ResponseWriter, *http.Request) {})
	c := client.New(srv.URL, "k")
	for _, target := range []client.Target{client.EnvironmentTarget(""), client.DeploymentTarget("")} {
		_, err := c.Predict(context.Background(), "q4z8m2xw", target, []byte(`{}`))
		require.ErrorContains(t, err, "may not be empty", target.String())
	}
	_, err := c.Predict(context.Background(), "", client.ProductionTarget(), []byte(`{}`))
	require.ErrorContains(t, err, "may not be empty")
	require.Empty(t, seen, "no request may be sent")
}

func TestPredict_GatewaySendsToItsOwnAddressWithTheSameKey(t *testing.T) {
	apiSrv, apiSeen := fakeGateway(t, func(http.ResponseWriter, *http.Request) {})
	gwSrv, gwSeen := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	c := client.New(apiSrv.URL, "mp_key")

	require.Same(t, c, c.Gateway(""), "no gateway address means the API's")
	out, err := c.Gateway(gwSrv.URL+"/").Predict(context.Background(), "q4z8m2xw", client.DevelopmentTarget(), []byte(`1`))
	require.NoError(t, err)
	require.Equal(t, "ok", string(out))
	got := <-gwSeen
	require.Equal(t, "/models/q4z8m2xw/development/predict", got.path)
	require.Equal(t, "Api-Key mp_key", got.auth)
	require.Empty(t, apiSeen, "the prediction must not reach the API's address")
}

func TestPredict_NotFoundIsAnErrorWithTheGatewaysMessage(t *testing.T) {
	srv, _ := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error": {"code": "not_found", "message": "environment \"qa\" not found"}}`)
	})
	_, err := client.New(srv.URL, "k").Predict(context.Background(), "q4z8m2xw", client.EnvironmentTarget("qa"), []byte(`{}`))
	e := apiError(t, err)
	require.Equal(t, client.Error{Status: 404, Code: "not_found", Message: `environment "qa" not found`}, *e)
	require.True(t, client.IsStatus(err, http.StatusNotFound))
}

func TestPredict_UnavailableSaysWhenToRetry(t *testing.T) {
	for _, tc := range []struct{ retryAfter, want string }{
		{"30", `no replica is ready (HTTP 503 unavailable); retry in 30s`},
		{"Wed, 21 Oct 2037 07:28:00 GMT", `no replica is ready (HTTP 503 unavailable); retry after Wed, 21 Oct 2037 07:28:00 GMT`},
		{"", `no replica is ready (HTTP 503 unavailable)`},
	} {
		srv, _ := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
			if tc.retryAfter != "" {
				w.Header().Set("Retry-After", tc.retryAfter)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error": {"code": "unavailable", "message": "no replica is ready"}}`)
		})
		_, err := client.New(srv.URL, "k").Predict(context.Background(), "q4z8m2xw", client.ProductionTarget(), []byte(`{}`))
		require.EqualError(t, err, tc.want)
		e := apiError(t, err)
		require.Equal(t, 503, e.Status)
		require.Equal(t, "no replica is ready", e.Message, "the retry hint must not change the API's message")
	}
}

func TestPredict_NonJSONErrorKeepsTheStatusAndText(t *testing.T) {
	srv, _ := fakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/models/q4z8m2xw/development/predict" {
			w.WriteHeader(http.StatusRequestEntityTooLarge) // no body at all
			return
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusGatewayTimeout)
		_, _ = io.WriteString(w, "\n<html>504 Gateway Time-out</html>\n")
	})
	c := client.New(srv.URL, "k")
	_, err := c.Predict(context.Background(), "q4z8m2xw", client.ProductionTarget(), []byte(`{}`))
	require.Equal(t, client.Error{Status: 504, Message: "<html>504 Gateway Time-out</html>"}, *apiError(t, err))
	_, err = c.Predict(context.Background(), "q4z8m2xw", client.DevelopmentTarget(), []byte(`{}`))
	require.EqualError(t, err, "Request Entity Too Large (HTTP 413)")
}

func TestPredictStream_ChunksArriveBeforeTheAnswerEnds(t *testing.T) {
	firstRead := make(chan struct{})
	srv, seen := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		// The answer goes on only once the client has the first event: a client that
		// waited for the whole answer would never see it.
		select {
		case <-firstRead:
		case <-time.After(10 * time.Second):
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	answer, header, err := client.New(srv.URL, "k").PredictStream(ctx, "q4z8m2xw", client.EnvironmentTarget("staging"),
		[]byte(`{"stream": true}`), "text/event-stream")
	require.NoError(t, err)
	defer answer.Close()
	require.Equal(t, "text/event-stream", header.Get("Content-Type"))
	got := <-seen
	require.Equal(t, "text/event-stream", got.accept)
	require.Equal(t, `{"stream": true}`, got.body)

	r := bufio.NewReader(answer)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "data: one\n", line, "the first event must arrive while the answer is still open")
	close(firstRead)
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "\ndata: two\n\n", string(rest))
}

func TestPredictStream_ErrorAnswerIsAnErrorNotABody(t *testing.T) {
	srv, _ := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error": {"code": "unauthenticated", "message": "invalid API key"}}`)
	})
	answer, _, err := client.New(srv.URL, "bad").PredictStream(context.Background(), "q4z8m2xw", client.ProductionTarget(), []byte(`{}`), "")
	require.Nil(t, answer)
	require.True(t, client.IsStatus(err, http.StatusUnauthorized), "got %v", err)
}
