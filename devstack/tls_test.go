package devstack_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/tlsfiles"
	"github.com/modelplane/modelplane/internal/tlsfiles/tlstest"
)

// With a certificate, the stack's API serves HTTPS and its local agent, trusting the CA
// file, registers over it.
func TestStack_ServesHTTPSAndTheLocalAgentReportsOverIt(t *testing.T) {
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Pair(t, 7)
	s := startStack(t, devstack.Options{DataDir: t.TempDir(), GPUProfile: "none", Postgres: devstack.PostgresOptions{DatabaseURL: dbURL},
		TLS: tlsfiles.ServerFiles{CertFile: certFile, KeyFile: keyFile}, TLSCAFile: ca.File})
	defer closeStack(t, s)
	require.True(t, strings.HasPrefix(s.APIURL, "https://"), "the API's URL says https: %s", s.APIURL)

	cfg, err := tlsfiles.ClientConfig(ca.File)
	require.NoError(t, err)
	hc := &http.Client{Transport: tlsfiles.Transport(cfg), Timeout: 5 * time.Second}
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, s.APIURL+"/v1/nodes", nil)
		req.Header.Set("Authorization", "Api-Key "+s.NewAPIKey)
		res, err := hc.Do(req)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode == http.StatusOK && strings.Contains(string(b), `"name":"dev"`)
	}, 20*time.Second, 100*time.Millisecond, "the local agent registers over HTTPS")

	_, err = http.Get(s.APIURL + "/healthz")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate signed by unknown authority")
}
