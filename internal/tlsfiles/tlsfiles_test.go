package tlsfiles_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/internal/tlsfiles"
	"github.com/modelplane/modelplane/internal/tlsfiles/tlstest"
)

// serveTLS serves "ok" over TLS with the pair in certFile and keyFile, rechecking the files
// on every handshake.
func serveTLS(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	c, err := tlsfiles.Load(certFile, keyFile)
	require.NoError(t, err)
	c.Recheck = 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln = tlsfiles.Listener(ln, c)
	assert.Equal(t, "https", tlsfiles.Scheme(ln))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String()
}

func client(t *testing.T, caFile string) *http.Client {
	t.Helper()
	cfg, err := tlsfiles.ClientConfig(caFile)
	require.NoError(t, err)
	// A fresh connection per request: each one must see the certificate served now.
	tr := tlsfiles.Transport(cfg).(*http.Transport)
	tr.DisableKeepAlives = true
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func servedSerial(t *testing.T, hc *http.Client, url string) int64 {
	t.Helper()
	res, err := hc.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	require.Equal(t, "ok", string(body))
	require.NotNil(t, res.TLS, "the answer came over TLS")
	return res.TLS.PeerCertificates[0].SerialNumber.Int64()
}

func TestCertificate_ServesOverTLSAndTheNextConnectionSeesARotatedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Pair(t, 100)
	url := serveTLS(t, certFile, keyFile)
	hc := client(t, ca.File)
	assert.Equal(t, int64(100), servedSerial(t, hc, url))

	ca.Issue(t, certFile, keyFile, 101)
	assert.Equal(t, int64(101), servedSerial(t, hc, url), "the rotated certificate is served to the next connection")
}

func TestCertificate_AHalfWrittenRotationKeepsTheOldPairServed(t *testing.T) {
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Pair(t, 200)
	url := serveTLS(t, certFile, keyFile)
	hc := client(t, ca.File)
	// The new certificate is in place, its key not yet: the pair does not match.
	other, _ := ca.Pair(t, 201)
	b, err := os.ReadFile(other)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, b, 0o600))
	assert.Equal(t, int64(200), servedSerial(t, hc, url))
}

func TestClientConfig_WithoutTheCAFileTheServerIsNotTrusted(t *testing.T) {
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Pair(t, 300)
	url := serveTLS(t, certFile, keyFile)
	_, err := client(t, "").Get(url)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate signed by unknown authority")
	assert.Equal(t, int64(300), servedSerial(t, client(t, ca.File), url))
}

func TestLoad_MissingOrBadFilesAreAnErrorAtStart(t *testing.T) {
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Pair(t, 400)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a certificate"), 0o600))
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"no key", certFile, "", "--tls-key-file"},
		{"no certificate", "", keyFile, "--tls-cert-file"},
		{"missing certificate", filepath.Join(t.TempDir(), "absent.pem"), keyFile, "no such file"},
		{"bad certificate", garbage, keyFile, "garbage.pem"},
		{"key of another certificate", certFile, func() string { _, k := ca.Pair(t, 401); return k }(), "private key does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsfiles.ServerFiles{CertFile: tc.cert, KeyFile: tc.key}.Load()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	c, err := tlsfiles.ServerFiles{}.Load()
	assert.NoError(t, err)
	assert.Nil(t, c, "no files: plain HTTP")

	_, err = tlsfiles.ClientConfig(garbage)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "no PEM certificate"), err.Error())
	_, err = tlsfiles.ClientConfig(filepath.Join(t.TempDir(), "absent.pem"))
	assert.ErrorContains(t, err, "CA file")
}
