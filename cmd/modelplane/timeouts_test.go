package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/store"
)

// declaredBody is a request that says a body of 1000 bytes follows, and then sends none.
func declaredBody(method, path, auth string) string {
	r := method + " " + path + " HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
	if auth != "" {
		r += "Authorization: " + auth + "\r\n"
	}
	return r + "\r\n"
}

// sendRaw opens a connection to addr and writes req, as a client that then stops sending.
func sendRaw(t *testing.T, addr, req string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, req)
	require.NoError(t, err)
	return conn
}

// readUntilClosed reads what the server sends until it closes the connection, for at most
// limit; closed is false when the connection was still open at the limit.
func readUntilClosed(t *testing.T, conn net.Conn, limit time.Duration) (got string, took time.Duration, closed bool) {
	t.Helper()
	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(start.Add(limit)))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), time.Since(start), false
	}
	return string(b), time.Since(start), true
}

// startServer runs a modelplane server subcommand and waits for path on addr to answer 200.
func startServer(t *testing.T, addr, healthPath string, args ...string) {
	t.Helper()
	startProcess(t, args...)
	waitHealthy(t, "http://"+addr+healthPath)
}

// A request declaring a body it never sends must be refused at once when it has no key: the
// answer must not wait for the body (the body read timeout is long here), and the connection
// must close.
func TestAPICmd_RefusesAnUnauthenticatedStalledBodyAtOnce(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, "/healthz", "api", "--listen", addr, "--database-url", dbURL,
		"--blob-dir", filepath.Join(t.TempDir(), "blobs"), "--body-read-timeout", "1m")

	conn := sendRaw(t, addr, declaredBody(http.MethodPost, "/v1/models", ""))
	got, took, closed := readUntilClosed(t, conn, 5*time.Second)
	require.True(t, closed, "the connection is still open after %s; got %q", took, got)
	assert.True(t, strings.HasPrefix(got, "HTTP/1.1 401 "), "got %q", got)
	assert.Less(t, took, 2*time.Second)
}

// With a valid key, a body that never comes holds the connection only for the body read
// timeout; an idle keep-alive connection only for the idle timeout.
func TestAPICmd_ClosesStalledBodiesAndIdleConnections(t *testing.T) {
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	_, _, key := apitest.Workspace(t, db, "apitimeouts")
	addr := freeAddr(t)
	startServer(t, addr, "/healthz", "api", "--listen", addr, "--database-url", dbURL,
		"--blob-dir", filepath.Join(t.TempDir(), "blobs"), "--body-read-timeout", "1s", "--idle-timeout", "1s")

	t.Run("stalled body", func(t *testing.T) {
		conn := sendRaw(t, addr, declaredBody(http.MethodPost, "/v1/models", "Api-Key "+key))
		got, took, closed := readUntilClosed(t, conn, 10*time.Second)
		require.True(t, closed, "the connection is still open after %s; got %q", took, got)
		assert.GreaterOrEqual(t, took, 800*time.Millisecond, "closed before the body read timeout: %q", got)
		assert.Less(t, took, 5*time.Second)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		assertIdleClosed(t, addr, "/healthz")
	})
}

// assertIdleClosed makes one complete request on a keep-alive connection, then waits for the
// server (idle timeout 1s) to close it.
func assertIdleClosed(t *testing.T, addr, path string) {
	t.Helper()
	conn := sendRaw(t, addr, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, res.Body)
	require.NoError(t, err)
	res.Body.Close()
	require.False(t, res.Close, "the server must keep the connection alive after one request")

	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(start.Add(10*time.Second)))
	_, err = br.ReadByte()
	took := time.Since(start)
	require.ErrorIs(t, err, io.EOF, "the idle connection must be closed, not %v after %s", err, took)
	assert.GreaterOrEqual(t, took, 500*time.Millisecond)
	assert.Less(t, took, 5*time.Second)
}

// The gateway's counterparts: an unauthenticated stalled body is refused at once, an
// authenticated one is cut after the body read timeout (without a flat read timeout, which
// would cut streamed uploads), and idle keep-alive connections close.
func TestGatewayCmd_BoundsStalledBodiesAndIdleConnections(t *testing.T) {
	m, _, key := servedModel(t, "gwtimeouts")
	predict := "/models/" + m.ID + "/production/predict"

	t.Run("unauthenticated stalled body", func(t *testing.T) {
		addr := freeAddr(t)
		startServer(t, addr, "/readyz", "gateway", "--listen", addr, "--database-url", dbURL, "--body-read-timeout", "1m")
		conn := sendRaw(t, addr, declaredBody(http.MethodPost, predict, ""))
		got, took, closed := readUntilClosed(t, conn, 5*time.Second)
		require.True(t, closed, "the connection is still open after %s; got %q", took, got)
		assert.True(t, strings.HasPrefix(got, "HTTP/1.1 401 "), "got %q", got)
		assert.Less(t, took, 2*time.Second)
	})

	addr := freeAddr(t)
	startServer(t, addr, "/readyz", "gateway", "--listen", addr, "--database-url", dbURL,
		"--body-read-timeout", "1s", "--idle-timeout", "1s")
	t.Run("stalled body", func(t *testing.T) {
		conn := sendRaw(t, addr, declaredBody(http.MethodPost, predict, "Api-Key "+key))
		got, took, closed := readUntilClosed(t, conn, 10*time.Second)
		require.True(t, closed, "the connection is still open after %s; got %q", took, got)
		assert.GreaterOrEqual(t, took, 800*time.Millisecond, "closed before the body read timeout: %q", got)
		assert.Less(t, took, 5*time.Second)
	})
	t.Run("slow body that keeps coming", func(t *testing.T) {
		// A byte every half second for longer than the timeout: renewed, not cut.
		body := `{"text":"slowly"}`
		conn := sendRaw(t, addr, "POST "+predict+" HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"+
			"Authorization: Api-Key "+key+"\r\nConnection: close\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
		for i := 0; i < 4; i++ {
			time.Sleep(500 * time.Millisecond)
			_, err := io.WriteString(conn, body[i:i+1])
			require.NoError(t, err)
		}
		_, err := io.WriteString(conn, body[4:])
		require.NoError(t, err)
		got, took, closed := readUntilClosed(t, conn, 10*time.Second)
		require.True(t, closed, "got %q after %s", got, took)
		assert.True(t, strings.HasPrefix(got, "HTTP/1.1 200 "), "got %q", got)
		assert.Contains(t, got, `"slowly"`)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		assertIdleClosed(t, addr, "/healthz")
	})
}
