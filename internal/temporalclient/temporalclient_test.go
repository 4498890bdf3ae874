package temporalclient_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/internal/temporalclient"
	"github.com/modelplane/modelplane/internal/tlsfiles/tlstest"
)

func TestOptions_PlainWhenNoTLSIsAsked(t *testing.T) {
	o, err := temporalclient.Options(temporalclient.Config{Address: "t:7233", Namespace: "ns"}, slog.Default())
	require.NoError(t, err)
	require.Equal(t, "t:7233", o.HostPort)
	require.Equal(t, "ns", o.Namespace)
	require.Nil(t, o.ConnectionOptions.TLS)
}

func TestOptions_MTLSCarriesCAServerNameAndClientCertificate(t *testing.T) {
	f := tlstest.MutualTLS(t, "temporal.internal")
	o, err := temporalclient.Options(temporalclient.Config{Address: "t:7233", TLS: temporalclient.TLS{
		CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey, ServerName: "temporal.internal",
	}}, slog.Default())
	require.NoError(t, err)
	c := o.ConnectionOptions.TLS
	require.NotNil(t, c, "naming files turns TLS on")
	require.Equal(t, "temporal.internal", c.ServerName)
	require.NotNil(t, c.RootCAs)
	cert, err := c.GetClientCertificate(nil)
	require.NoError(t, err)
	require.NotEmpty(t, cert.Certificate)
}

func TestOptions_TLSWithoutFilesTrustsTheSystemRoots(t *testing.T) {
	o, err := temporalclient.Options(temporalclient.Config{Address: "t:7233", TLS: temporalclient.TLS{Enabled: true}}, slog.Default())
	require.NoError(t, err)
	require.NotNil(t, o.ConnectionOptions.TLS)
	require.Nil(t, o.ConnectionOptions.TLS.RootCAs)
	require.Nil(t, o.ConnectionOptions.TLS.GetClientCertificate)
}

func TestOptions_RefusesBadTLSFilesAtOnce(t *testing.T) {
	f := tlstest.MutualTLS(t, "temporal.internal")
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	for _, tc := range []struct {
		name string
		tls  temporalclient.TLS
		want string
	}{
		{"cert without key", temporalclient.TLS{CertFile: f.ClientCert}, "needs both"},
		{"key without cert", temporalclient.TLS{KeyFile: f.ClientKey}, "needs both"},
		{"missing CA", temporalclient.TLS{CAFile: filepath.Join(t.TempDir(), "none.pem")}, "temporal TLS CA"},
		{"CA not PEM", temporalclient.TLS{CAFile: notPEM}, "no PEM certificate"},
		{"key of another cert", temporalclient.TLS{CertFile: f.ClientCert, KeyFile: f.ServerKey}, "client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := temporalclient.Options(temporalclient.Config{Address: "t:7233", TLS: tc.tls}, slog.Default())
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
