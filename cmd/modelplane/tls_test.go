package main

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/internal/tlsfiles"
	"github.com/modelplane/modelplane/internal/tlsfiles/tlstest"
)

// tlsGet gets url on a fresh connection trusting caFile and answers the serial number of
// the certificate the server showed.
func tlsGet(caFile, url string) (int64, int, error) {
	cfg, err := tlsfiles.ClientConfig(caFile)
	if err != nil {
		return 0, 0, err
	}
	tr := tlsfiles.Transport(cfg).(*http.Transport)
	tr.DisableKeepAlives = true
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	if res.TLS == nil {
		return 0, res.StatusCode, errors.New("not over TLS")
	}
	return res.TLS.PeerCertificates[0].SerialNumber.Int64(), res.StatusCode, nil
}

// Every server role serves HTTPS with --tls-cert-file and --tls-key-file, and a certificate
// rotated on disk is what the next connection sees, without a restart.
func TestServerCmds_ServeHTTPSAndTheRotatedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	tokenFile := filepath.Join(t.TempDir(), "node-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600))
	for _, tc := range []struct {
		role, health string
		args         []string
	}{
		{"api", "/healthz", []string{"--database-url", dbURL, "--blob-dir", filepath.Join(t.TempDir(), "blobs")}},
		{"gateway", "/readyz", []string{"--database-url", dbURL}},
		{"agent", "/healthz", []string{"--token-file", tokenFile, "--gpu-profile", "none", "--state-dir", t.TempDir()}},
	} {
		t.Run(tc.role, func(t *testing.T) {
			certFile, keyFile := ca.Pair(t, 1000)
			addr := freeAddr(t)
			startProcess(t, append([]string{tc.role, "--listen", addr, "--tls-cert-file", certFile, "--tls-key-file", keyFile}, tc.args...)...)
			url := "https://" + addr + tc.health
			require.Eventually(t, func() bool {
				_, code, err := tlsGet(ca.File, url)
				return err == nil && code == http.StatusOK
			}, 60*time.Second, 50*time.Millisecond, "%s never answered 200 over TLS", url)
			serial, _, err := tlsGet(ca.File, url)
			require.NoError(t, err)
			assert.Equal(t, int64(1000), serial)

			ca.Issue(t, certFile, keyFile, 1001)
			require.Eventually(t, func() bool {
				serial, _, err := tlsGet(ca.File, url)
				return err == nil && serial == 1001
			}, 5*time.Second, 100*time.Millisecond, "the next connection must see the rotated certificate")

			_, _, err = tlsGet("", url)
			require.Error(t, err, "a client without the CA file must not trust the server")
			assert.Contains(t, err.Error(), "certificate signed by unknown authority")
		})
	}
}

// The CLI reaches an https:// API with --tls-cert-file's authority given as --tls-ca-file,
// and says why it cannot without it.
func TestClientCmds_TrustTheCAFile(t *testing.T) {
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Pair(t, 2000)
	addr := freeAddr(t)
	startProcess(t, "api", "--listen", addr, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--database-url", dbURL, "--blob-dir", filepath.Join(t.TempDir(), "blobs"))
	url := "https://" + addr
	require.Eventually(t, func() bool {
		_, code, err := tlsGet(ca.File, url+"/healthz")
		return err == nil && code == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond)

	// A key that does not exist: the API answering 401 proves the TLS connection was made.
	out, err := modelplaneCmd("models", "--url", url, "--api-key", "mp_nokey_nosecretnosecretnosecret", "--tls-ca-file", ca.File).CombinedOutput()
	require.Error(t, err)
	assert.NotContains(t, string(out), "certificate", "with the CA file the TLS connection is made: %s", out)

	out, err = modelplaneCmd("models", "--url", url, "--api-key", "mp_nokey_nosecretnosecretnosecret").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "certificate signed by unknown authority", "without the CA file: %s", out)
	assert.Contains(t, string(out), "--tls-ca-file", "the error says how to trust the API: %s", out)
}

// A missing or bad certificate file stops a server at start with a message naming it.
func TestServerCmds_BadTLSFilesAreAStartupError(t *testing.T) {
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Pair(t, 3000)
	tokenFile := filepath.Join(t.TempDir(), "node-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600))
	missing := filepath.Join(t.TempDir(), "absent.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"agent with a missing certificate", []string{"agent", "--token-file", tokenFile, "--gpu-profile", "none",
			"--listen", "127.0.0.1:0", "--tls-cert-file", missing, "--tls-key-file", keyFile}, "absent.pem"},
		{"api with a certificate but no key", []string{"api", "--database-url", dbURL, "--tls-cert-file", certFile}, "--tls-key-file"},
		{"gateway with a key of another certificate", []string{"gateway", "--database-url", dbURL, "--tls-cert-file", certFile,
			"--tls-key-file", func() string { _, k := ca.Pair(t, 3001); return k }()}, "private key does not match"},
		{"worker with a missing CA file", []string{"worker", "--database-url", dbURL, "--tls-ca-file", missing}, "CA file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := modelplaneCmd(tc.args...).CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "must fail: %v\n%s", err, out)
			assert.Contains(t, string(out), tc.want)
		})
	}
}
