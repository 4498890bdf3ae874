package main

import (
	"crypto/tls"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/internal/tlsfiles"
)

// tlsServerFlags adds --tls-cert-file and --tls-key-file: with both, the command's
// listener speaks HTTPS, reading the pair again when the files are replaced.
func tlsServerFlags(cmd *cobra.Command, f *tlsfiles.ServerFiles) {
	cmd.Flags().StringVar(&f.CertFile, "tls-cert-file", envString("MODELPLANE_TLS_CERT_FILE", ""),
		"PEM certificate (chain) to serve HTTPS with, read again when the file is replaced; empty serves plain HTTP (MODELPLANE_TLS_CERT_FILE)")
	cmd.Flags().StringVar(&f.KeyFile, "tls-key-file", envString("MODELPLANE_TLS_KEY_FILE", ""),
		"PEM private key of --tls-cert-file (MODELPLANE_TLS_KEY_FILE)")
}

// tlsCAFlag adds --tls-ca-file, the private certificate authority a command's clients
// trust besides the system's.
func tlsCAFlag(cmd *cobra.Command, p *string, whom string) {
	cmd.Flags().StringVar(p, "tls-ca-file", envString("MODELPLANE_TLS_CA_FILE", ""),
		"PEM certificate authorities trusted, besides the system's, when calling "+whom+" over https:// (MODELPLANE_TLS_CA_FILE)")
}

// httpClientTLS is the client configuration trusting caFile; nil (the system's
// authorities) when it is empty.
func httpClientTLS(caFile string) (*tls.Config, error) {
	return tlsfiles.ClientConfig(caFile)
}

// httpClientWithCA is an http.Client trusting caFile; nil when caFile is empty, which
// callers read as the default client.
func httpClientWithCA(caFile string) (*http.Client, error) {
	cfg, err := tlsfiles.ClientConfig(caFile)
	if err != nil || cfg == nil {
		return nil, err
	}
	return &http.Client{Transport: tlsfiles.Transport(cfg)}, nil
}
