package httpserve

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func serve(t *testing.T, h http.Handler, to Timeouts) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = Server(h, to)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// Once the body is in, the answer may stream for as long as it takes: the body's read
// deadline must not be left behind to cut it (or cancel the request's context).
func TestBoundBody_LeavesAStreamedAnswerAloneOnceTheBodyIsIn(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for i := 0; i < 4; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			_, _ = w.Write(b)
			_ = http.NewResponseController(w).Flush()
		}
	}), Timeouts{BodyRead: 200 * time.Millisecond})

	res, err := http.Post("http://"+addr, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	assert.Equal(t, "xxxx", string(got))
}

// A refusal before the body is read goes out at once and closes the connection, without
// waiting for the declared body.
func TestBoundBody_RefusesAnUnreadBodyAtOnce(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}), Timeouts{BodyRead: time.Minute})
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(2*time.Second)))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
	assert.True(t, res.Close)
	_, err = io.ReadAll(br)
	require.NoError(t, err, "the connection closes rather than waiting for the body")
}

// A handler that answers without reading the body (an action taking no input) must not let
// net/http wait forever to discard a declared body that never comes.
func TestBoundBody_BoundsTheDiscardOfAnUnreadBody(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"writes an answer": func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") },
		"writes nothing":   func(http.ResponseWriter, *http.Request) {},
	} {
		t.Run(name, func(t *testing.T) {
			addr := serve(t, h, Timeouts{BodyRead: 500 * time.Millisecond})
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()
			_, err = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
			require.NoError(t, err)
			start := time.Now()
			require.NoError(t, conn.SetReadDeadline(start.Add(5*time.Second)))
			got, err := io.ReadAll(conn)
			require.NoError(t, err, "the connection is still open after %s; got %q", time.Since(start), got)
			assert.Less(t, time.Since(start), 3*time.Second)
		})
	}
}

func TestMetricsToken_AsksForTheBearerToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics") })
	for _, tc := range []struct {
		token, auth string
		want        int
	}{
		{"secret", "Bearer secret", http.StatusOK},
		{"secret", "", http.StatusUnauthorized},
		{"secret", "Bearer other", http.StatusUnauthorized},
		{"secret", "secret", http.StatusUnauthorized},
		{"", "Bearer ", http.StatusUnauthorized},
		{"", "", http.StatusUnauthorized},
	} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Authorization", tc.auth)
		rec := httptest.NewRecorder()
		MetricsToken(tc.token, ok).ServeHTTP(rec, req)
		assert.Equal(t, tc.want, rec.Code, "token %q, Authorization %q", tc.token, tc.auth)
	}
}
