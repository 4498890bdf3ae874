// Package temporalclient builds the options every modelplane process dials Temporal with:
// the frontend's address, the namespace and, for a cluster that asks for it, TLS or mTLS.
package temporalclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/modelplane/modelplane/internal/telemetry"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// Config is where a process finds Temporal and how it proves itself there.
type Config struct {
	Address   string // the frontend's host:port
	Namespace string
	TLS       TLS
}

// TLS configures the connection to the frontend. It is on when Enabled is set or when any
// file is named, as with the temporal CLI.
type TLS struct {
	Enabled bool
	// CAFile holds the PEM certificates that sign the frontend's certificate; empty trusts
	// the system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key for a frontend that requires
	// mTLS. They are read again at every new connection, so a renewed certificate is used
	// without a restart.
	CertFile string
	KeyFile  string
	// ServerName is the name the frontend's certificate must carry; empty means the host
	// of the address.
	ServerName string
}

// On reports whether the connection uses TLS.
func (t TLS) On() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// Config returns the client's tls.Config, or nil when TLS is off. It reads the files now so
// that a wrong path fails at start, not at the first call.
func (t TLS) Config() (*tls.Config, error) {
	if !t.On() {
		return nil, nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("temporal TLS: a client certificate needs both --temporal-tls-cert-file and --temporal-tls-key-file")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("temporal TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("temporal TLS CA: no PEM certificate in %s", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, fmt.Errorf("temporal TLS client certificate: %w", err)
		}
		certFile, keyFile := t.CertFile, t.KeyFile
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("temporal TLS client certificate: %w", err)
			}
			return &cert, nil
		}
	}
	return c, nil
}

// Options returns the SDK client options for c, logging through log. Whatever else a
// process adds to every client (interceptors, metrics) belongs here too, so that each role
// dials alike.
func Options(c Config, log *slog.Logger) (client.Options, error) {
	tlsConfig, err := c.TLS.Config()
	if err != nil {
		return client.Options{}, err
	}
	o := client.Options{
		HostPort:  c.Address,
		Namespace: c.Namespace,
		Logger:    sdklog.NewStructuredLogger(log.With("component", "temporal-client")),
		// Traces workflows and activities; none unless tracing is on.
		Interceptors: telemetry.TemporalInterceptors(),
	}
	if tlsConfig != nil {
		o.ConnectionOptions.TLS = tlsConfig
	}
	return o, nil
}

// Dial connects to Temporal and checks that it answers, naming the address when it does not.
func Dial(ctx context.Context, c Config, log *slog.Logger) (client.Client, error) {
	o, err := Options(c, log)
	if err != nil {
		return nil, err
	}
	tc, err := client.DialContext(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("temporal at %s: %w%s", c.Address, err, c.TLS.hint())
	}
	return tc, nil
}

// hint names the flags that may be missing when a dial fails: a refused handshake reads as
// a closed connection or a broken pipe, which says nothing of certificates.
func (t TLS) hint() string {
	switch {
	case !t.On():
		return " (if the frontend serves TLS, set --temporal-tls and the other --temporal-tls-* flags)"
	case t.CertFile == "":
		return " (if the frontend requires mTLS, set --temporal-tls-cert-file and --temporal-tls-key-file)"
	}
	return ""
}

// NewLazy returns a client that connects at its first call, for processes that serve
// without Temporal and report its absence instead of failing to start.
func NewLazy(c Config, log *slog.Logger) (client.Client, error) {
	o, err := Options(c, log)
	if err != nil {
		return nil, err
	}
	return client.NewLazyClient(o)
}
