package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/nodeauth"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
)

// issue makes a node token of node name's own.
func issue(t *testing.T, f *fixture, name string) (store.NodeToken, string) {
	t.Helper()
	text, err := secretbox.Generate()
	require.NoError(t, err)
	key, err := secretbox.ParseKey(text)
	require.NoError(t, err)
	tok, token, err := nodeauth.Issue(context.Background(), f.db, key, name)
	require.NoError(t, err)
	return tok, token
}

// sharedlessFixture is an API with no shared node token: only nodes' own tokens.
func sharedlessFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.e = api.New(apitest.Deps(t, f.db))
	return f
}

func TestNodeTokens_ANodesTokenReportsAsThatNodeAlone(t *testing.T) {
	for name, f := range map[string]*fixture{"with a shared token too": nodeFixture(t), "without a shared token": sharedlessFixture(t)} {
		t.Run(name, func(t *testing.T) {
			a, b := "gpu-a-"+modelplane.NewID(6), "gpu-b-"+modelplane.NewID(6)
			_, tokenA := issue(t, f, a)
			rec := heartbeat(t, f, tokenA, sampleHeartbeat(a))
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

			rec = heartbeat(t, f, tokenA, sampleHeartbeat(b))
			assert.Equal(t, http.StatusUnauthorized, rec.Code, "node A's token must not report as node B: %s", rec.Body.String())
			assert.NotContains(t, rec.Body.String(), tokenA)

			nodes, err := store.ListNodes(context.Background(), f.db)
			require.NoError(t, err)
			for _, n := range nodes {
				assert.NotEqual(t, b, n.Name, "node B must not be registered by A's token")
			}
			var sum []byte
			require.NoError(t, f.db.GetContext(context.Background(), &sum, `SELECT token_sha256 FROM nodes WHERE name = $1`, a))
			assert.Equal(t, nodeauth.Sum(tokenA), sum, "the node is recorded with the SHA-256 of the token it reported with")
		})
	}
}

func TestNodeTokens_RevokedAndUnknownTokensAreRefusedAtOnce(t *testing.T) {
	f := nodeFixture(t)
	a := "gpu-a-" + modelplane.NewID(6)
	tok, tokenA := issue(t, f, a)
	require.Equal(t, http.StatusOK, heartbeat(t, f, tokenA, sampleHeartbeat(a)).Code)

	require.NoError(t, store.RevokeNodeToken(context.Background(), f.db, tok.ID))
	assert.Equal(t, http.StatusUnauthorized, heartbeat(t, f, tokenA, sampleHeartbeat(a)).Code, "a revoked token")
	assert.ErrorIs(t, store.RevokeNodeToken(context.Background(), f.db, tok.ID), store.ErrNotFound, "revoked already")

	// Well formed, but issued to no node.
	assert.Equal(t, http.StatusUnauthorized, heartbeat(t, f, nodeauth.Prefix+"nosuchid_"+modelplane.NewID(32), sampleHeartbeat(a)).Code)
	// The SHA-256 itself is no credential.
	assert.Equal(t, http.StatusUnauthorized, heartbeat(t, f, string(nodeauth.Sum(tokenA)), sampleHeartbeat(a)).Code)
}

func TestNodeTokens_TheSharedTokenStillWorksForNodesWithoutTokensOfTheirOwn(t *testing.T) {
	f := nodeFixture(t)
	legacy, owned := "gpu-legacy-"+modelplane.NewID(6), "gpu-owned-"+modelplane.NewID(6)
	assert.Equal(t, http.StatusOK, heartbeat(t, f, nodeToken, sampleHeartbeat(legacy)).Code)

	_, token := issue(t, f, owned)
	require.Equal(t, http.StatusOK, heartbeat(t, f, token, sampleHeartbeat(owned)).Code)
	assert.Equal(t, http.StatusUnauthorized, heartbeat(t, f, nodeToken, sampleHeartbeat(owned)).Code,
		"the shared token must not take over a node that has a token of its own")

	// Without a shared token configured, the shared token is nobody's.
	g := sharedlessFixture(t)
	assert.Equal(t, http.StatusUnauthorized, heartbeat(t, g, nodeToken, sampleHeartbeat(legacy)).Code)
}

func TestNodeTokens_ANodesTokenDownloadsOnlyItsOwnArchives(t *testing.T) {
	f := nodeFixture(t)
	m, _, key := f.workspace(t)
	a, b := "gpu-a-"+modelplane.NewID(6), "gpu-b-"+modelplane.NewID(6)
	_, tokenA := issue(t, f, a)
	_, tokenB := issue(t, f, b)
	hbA, hbB := sampleHeartbeat(a), sampleHeartbeat(b)
	hbA.AgentID, hbB.AgentID = "agent-"+modelplane.NewID(8), "agent-"+modelplane.NewID(8)
	hbB.Replicas[0].ID = "rep-b"
	nodeOf := func(token string, hb agentproto.Heartbeat) string {
		rec := heartbeat(t, f, token, hb)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var out struct {
			NodeID string `json:"node_id"`
		}
		require.NoError(t, json.NewDecoder(bytes.NewReader(rec.Body.Bytes())).Decode(&out))
		return out.NodeID
	}
	nodeA, nodeB := nodeOf(tokenA, hbA), nodeOf(tokenB, hbB)
	pkg := func(name string) []byte {
		return packDir(t, map[string]string{"config.yaml": "model_name: " + name + "-" + modelplane.NewID(6) + "\n"})
	}
	onA := deployOn(t, f, m, key, pkg("on-a"), nodeA)
	onB := deployOn(t, f, m, key, pkg("on-b"), nodeB)

	assert.Equal(t, http.StatusOK, archiveGet(f, onA, tokenA, a, hbA.AgentID).Code)
	assert.Equal(t, http.StatusOK, archiveGet(f, onB, tokenB, b, hbB.AgentID).Code)
	for name, rec := range map[string]int{
		"A's token naming node B":  archiveGet(f, onB, tokenA, b, hbB.AgentID).Code,
		"A's token naming node A":  archiveGet(f, onB, tokenA, a, hbA.AgentID).Code,
		"the shared token as B":    archiveGet(f, onB, nodeToken, b, hbB.AgentID).Code,
		"A's token with no header": archiveGet(f, onA, tokenA, "", "").Code,
	} {
		assert.Equal(t, http.StatusNotFound, rec, name)
	}
	assert.Equal(t, http.StatusUnauthorized, archiveGet(f, onA, "mpn_x_y", a, hbA.AgentID).Code)
}
