package nodeauth_test

import (
	"context"
	"os"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/nodeauth"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
)

var dbURL string

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, "nodeauth", true, &dbURL)) }

const shared = "shared-node-token-0123456789"

func newKey(t *testing.T) *secretbox.Key {
	t.Helper()
	text, err := secretbox.Generate()
	require.NoError(t, err)
	k, err := secretbox.ParseKey(text)
	require.NoError(t, err)
	return k
}

// report records a node's heartbeat made with token and answers the node's ID.
func report(t *testing.T, db *sqlx.DB, name, token string) string {
	t.Helper()
	n, err := store.RecordHeartbeat(context.Background(), db, store.NodeReport{Name: name, AgentID: "agent-" + name,
		AgentURL: "http://127.0.0.1:1", GPUProfile: "fake", TokenSHA256: nodeauth.Sum(token)})
	require.NoError(t, err)
	return n.ID
}

func TestAgents_PresentEachAgentTheCredentialItsNodeReportsWith(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	key := newKey(t)
	agents := nodeauth.Agents{DB: db, Shared: shared, Key: key}

	a, b := "node-a-"+modelplane.NewID(6), "node-b-"+modelplane.NewID(6)
	tokA, tokenA, err := nodeauth.Issue(ctx, db, key, a)
	require.NoError(t, err)
	nodeA := report(t, db, a, tokenA)
	got, err := agents.Token(ctx, nodeA)
	require.NoError(t, err)
	assert.Equal(t, tokenA, got, "the control plane makes node A's own token again from the secrets key")

	nodeB := report(t, db, b, shared)
	got, err = agents.Token(ctx, nodeB)
	require.NoError(t, err)
	assert.Equal(t, shared, got, "a node reporting with the shared token is called with it")

	// Another process's key makes another token: the token is not guessable from its ID.
	assert.NotEqual(t, tokenA, nodeauth.Token(newKey(t), tokA.ID, a))
	assert.NotEqual(t, tokenA, nodeauth.Token(key, tokA.ID, b), "the token is bound to its node's name")

	// Revoked: the agent is not called with anything, and never with the shared token.
	require.NoError(t, store.RevokeNodeToken(ctx, db, tokA.ID))
	got, err = agents.Token(ctx, nodeA)
	require.Error(t, err)
	assert.Empty(t, got)
	assert.NotContains(t, err.Error(), shared)

	// Without the secrets key a node's own token cannot be made.
	c := "node-c-" + modelplane.NewID(6)
	_, tokenC, err := nodeauth.Issue(ctx, db, key, c)
	require.NoError(t, err)
	nodeC := report(t, db, c, tokenC)
	_, err = nodeauth.Agents{DB: db, Shared: shared}.Token(ctx, nodeC)
	assert.ErrorIs(t, err, nodeauth.ErrNoKey)
}

func TestAuthenticate_TellsWhoseTheTokenIs(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	name := "node-" + modelplane.NewID(6)
	_, token, err := nodeauth.Issue(ctx, db, newKey(t), name)
	require.NoError(t, err)

	id, err := nodeauth.Authenticate(ctx, db, shared, token)
	require.NoError(t, err)
	assert.Equal(t, name, id.Node)
	ok, err := nodeauth.MayActAs(ctx, db, id, name)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = nodeauth.MayActAs(ctx, db, id, "other-"+name)
	require.NoError(t, err)
	assert.False(t, ok, "a node's token speaks for that node alone")

	id, err = nodeauth.Authenticate(ctx, db, shared, shared)
	require.NoError(t, err)
	assert.True(t, id.Shared())
	ok, err = nodeauth.MayActAs(ctx, db, id, name)
	require.NoError(t, err)
	assert.False(t, ok, "the shared token does not speak for a node with a token of its own")

	for _, bad := range []string{"", "nope", shared + "x", nodeauth.Prefix + "x_y"} {
		_, err = nodeauth.Authenticate(ctx, db, shared, bad)
		assert.ErrorIs(t, err, nodeauth.ErrUnauthorized, "%q", bad)
	}
	_, err = nodeauth.Authenticate(ctx, db, "", shared)
	assert.ErrorIs(t, err, nodeauth.ErrUnauthorized, "no shared token configured")

	_, _, err = nodeauth.Issue(ctx, db, nil, name)
	assert.ErrorIs(t, err, nodeauth.ErrNoKey)
}
