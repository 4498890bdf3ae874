// Package tlsfiles reads TLS material from files: a server's certificate, read again when
// its files are replaced, and the certificate authorities a client trusts.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// DefaultRecheck is how long a loaded certificate is served before its files' modification
// times are looked at again.
const DefaultRecheck = time.Second

// Certificate is a server certificate and key read from two PEM files. A handshake after
// the files change (a new modification time or size, checked at most once per Recheck) gets
// the new pair, so a rotated certificate is served without a restart; a pair that does not
// load (a half-written rotation) keeps the old one served until it does.
type Certificate struct {
	certFile, keyFile string
	// Recheck is how long a loaded pair is served before the files are looked at again.
	Recheck time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Load reads the pair at once, so that a missing or bad file is an error at start.
func Load(certFile, keyFile string) (*Certificate, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, errors.New("tls: no certificate and key files")
	case certFile == "":
		return nil, errors.New("tls: a key file without a certificate file (--tls-cert-file)")
	case keyFile == "":
		return nil, errors.New("tls: a certificate file without a key file (--tls-key-file)")
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, Recheck: DefaultRecheck}
	stamp, err := c.stamps()
	if err != nil {
		return nil, err
	}
	if err := c.load(stamp); err != nil {
		return nil, err
	}
	c.checked = time.Now()
	return c, nil
}

func (c *Certificate) stamps() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, f := range []string{c.certFile, c.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return s, fmt.Errorf("tls: %w", err)
		}
		s[i] = fileStamp{mod: st.ModTime(), size: st.Size()}
	}
	return s, nil
}

func (c *Certificate) load(stamp [2]fileStamp) error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: certificate %s with key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.stamp = &pair, stamp
	return nil
}

// GetCertificate is the tls.Config hook: the current pair, read again when its files changed.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= c.Recheck {
		c.checked = now
		if stamp, err := c.stamps(); err == nil && stamp != c.stamp {
			// A failed load leaves the old pair served and is tried again at the next check:
			// the two files of a rotation are not replaced at the same instant.
			_ = c.load(stamp)
		}
	}
	return c.cert, nil
}

// Config is a server configuration serving c.
func (c *Certificate) Config() *tls.Config {
	// HTTP/1.1 only: the gateway's websockets and the bounded body reads take over the
	// connection, which HTTP/2 does not allow.
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate, NextProtos: []string{"http/1.1"}}
}

// Listener wraps ln so that its connections speak TLS with c; with c nil, ln is returned.
func Listener(ln net.Listener, c *Certificate) net.Listener {
	if c == nil {
		return ln
	}
	return tlsListener{Listener: tls.NewListener(ln, c.Config())}
}

// tlsListener only names the wrapped listener's kind for Scheme.
type tlsListener struct{ net.Listener }

// Scheme is "https" for a listener Listener wrapped, else "http".
func Scheme(ln net.Listener) string {
	if _, ok := ln.(tlsListener); ok {
		return "https"
	}
	return "http"
}

// ServerFiles are the --tls-cert-file and --tls-key-file of a server.
type ServerFiles struct {
	CertFile, KeyFile string
}

// Load is nil when neither file is named (plain HTTP), else the loaded certificate.
func (f ServerFiles) Load() (*Certificate, error) {
	if f.CertFile == "" && f.KeyFile == "" {
		return nil, nil
	}
	return Load(f.CertFile, f.KeyFile)
}

// ClientConfig trusts the certificate authorities in caFile (PEM) besides the system's;
// with caFile empty it is nil, which means the system's alone.
func ClientConfig(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", caFile)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// Transport is a copy of http.DefaultTransport trusting cfg's authorities; with cfg nil it
// is http.DefaultTransport itself.
func Transport(cfg *tls.Config) http.RoundTripper {
	if cfg == nil {
		return http.DefaultTransport
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg.Clone()
	return t
}
