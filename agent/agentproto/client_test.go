package agentproto_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/agent/agentproto"
)

// A client of an https:// agent with a private authority gets through when it trusts that
// authority (WithTLS), and not otherwise; it presents its token either way.
func TestClient_WithTLSTrustsTheAgentsAuthority(t *testing.T) {
	var auth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		_ = json.NewEncoder(w).Encode(agentproto.InventoryResponse{Node: "n1"})
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	_, err := agentproto.NewClient(srv.URL, "tok").Inventory(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate signed by unknown authority")

	inv, err := agentproto.NewClient(srv.URL, "tok").WithTLS(&tls.Config{RootCAs: pool}).Inventory(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "n1", inv.Node)
	assert.Equal(t, "Bearer tok", auth)
}
