package gateway_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/internal/httpserve"
	"github.com/modelplane/modelplane/testmodel"
)

// serve runs the gateway behind the server `modelplane gateway` and `modelplane dev` listen
// with, and returns its address.
func (f *fixture) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := gateway.NewServer(f.gw.Handler(nil), httpserve.Timeouts{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestGateway_ServesH2CClients(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	up := newServer(t, "prod", testmodel.Options{})
	f.point(modelplane.ProductionEnvironment, f.deployment("", false, up.addr()).ID)
	f.eventually("production", http.StatusOK)
	addr := f.serve(t)
	url := "http://" + addr + "/models/" + f.model.ID + "/production/predict"

	// Prior knowledge: the client opens with HTTP/2's preface, no upgrade.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	for range 3 { // one connection, several streams
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"x":1}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Api-Key "+f.key)
		res, err := client.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode, string(body))
		assert.Equal(t, 2, res.ProtoMajor, "answered over HTTP/2")
		assert.Equal(t, "prod", res.Header.Get("X-Server"))
		assert.Contains(t, string(body), `"output":{"x":1}`)
	}

	// HTTP/1.1 clients are served on the same address as before.
	req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/predict", strings.NewReader(`{}`))
	req.URL.Host = addr
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, 1, res.ProtoMajor)
}

// TestGateway_AnswersH2CUpgradeRequestsOverHTTP1: the Upgrade: h2c handshake, which RFC 9113
// deprecated and net/http does not implement, is not refused: the request is answered over
// HTTP/1.1 as if it had not asked.
func TestGateway_AnswersH2CUpgradeRequestsOverHTTP1(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	addr := f.serve(t)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
		"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, 1, res.ProtoMajor)
}
