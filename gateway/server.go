package gateway

import (
	"net/http"

	"github.com/modelplane/modelplane/internal/httpserve"
)

// NewServer returns the server a gateway listens with (`modelplane gateway` and `modelplane
// dev` alike): httpserve's bounds, and HTTP/1.1 plus cleartext HTTP/2 (h2c) with prior
// knowledge, so that clients can multiplex predictions over one connection without TLS.
// net/http does not speak the Upgrade: h2c handshake, which RFC 9113 deprecates, so such a
// request is answered over HTTP/1.1. Over TLS it stays HTTP/1.1 only (docs/decisions.md, TLS).
func NewServer(h http.Handler, t httpserve.Timeouts) *http.Server {
	srv := httpserve.Server(h, t)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Protocols = &p
	return srv
}
