// Package tlstest makes a private certificate authority and certificates it signs, for
// tests of servers and clients speaking TLS.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority of a test.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// File is the authority's certificate, PEM, for a client's --tls-ca-file.
	File string
}

// NewCA makes an authority and writes its certificate under t's temporary directory.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "modelplane test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{cert: cert, key: key, File: filepath.Join(t.TempDir(), "ca.pem")}
	write(t, ca.File, "CERTIFICATE", der)
	return ca
}

// Issue writes a server certificate for 127.0.0.1 and localhost with the given serial
// number, and its key, to certFile and keyFile (replacing them when they exist).
func (ca *CA) Issue(t testing.TB, certFile, keyFile string, serial int64) {
	t.Helper()
	ca.issue(t, certFile, keyFile, serial, []string{"localhost"}, x509.ExtKeyUsageServerAuth)
}

// issue writes a certificate for 127.0.0.1 and names, for the given uses, and its key.
func (ca *CA) issue(t testing.TB, certFile, keyFile string, serial int64, names []string, usage ...x509.ExtKeyUsage) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: names, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, keyFile, "EC PRIVATE KEY", kder)
	write(t, certFile, "CERTIFICATE", der)
}

// Files are the paths of an authority and of a server and a client certificate it signed,
// for mutual TLS.
type Files struct {
	CA                    string
	ServerCert, ServerKey string // for 127.0.0.1, localhost and the name given to MutualTLS
	ClientCert, ClientKey string
}

// MutualTLS writes an authority, a server certificate for 127.0.0.1, localhost and dnsName,
// which may act as a client too (Temporal's own services dial their frontend with the
// server's pair), and a client certificate, under t's temporary directory.
func MutualTLS(t testing.TB, dnsName string) Files {
	t.Helper()
	ca := NewCA(t)
	dir := t.TempDir()
	f := Files{CA: ca.File,
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem")}
	ca.issue(t, f.ServerCert, f.ServerKey, 2, []string{dnsName, "localhost"}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	ca.issue(t, f.ClientCert, f.ClientKey, 3, nil, x509.ExtKeyUsageClientAuth)
	return f
}

// Pair issues a certificate into t's temporary directory and answers its two files.
func (ca *CA) Pair(t testing.TB, serial int64) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.Issue(t, certFile, keyFile, serial)
	return certFile, keyFile
}

// write replaces path by renaming a new file over it, as a certificate rotation does.
func write(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
