package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
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

// httpClientWithCA is the client commands' http.Client: it trusts caFile besides the
// system's authorities, and says how to trust an API whose certificate it does not.
func httpClientWithCA(caFile string) (*http.Client, error) {
	cfg, err := tlsfiles.ClientConfig(caFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: caHint{tlsfiles.Transport(cfg)}}, nil
}

// caHint adds to an unknown-authority error the flag that fixes it.
type caHint struct{ http.RoundTripper }

func (h caHint) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := h.RoundTripper.RoundTrip(r)
	var unknown x509.UnknownAuthorityError
	if err != nil && errors.As(err, &unknown) {
		err = fmt.Errorf("%w (give the authority that signed the API's certificate with --tls-ca-file or MODELPLANE_TLS_CA_FILE)", err)
	}
	return res, err
}
