package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
)

func newSecretsKey(t *testing.T) *secretbox.Key {
	t.Helper()
	text, err := secretbox.Generate()
	require.NoError(t, err)
	k, err := secretbox.ParseKey(text)
	require.NoError(t, err)
	return k
}

func TestSecrets_StoredSealedPerWorkspaceAndAValueMovedToAnotherRowDoesNotOpen(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	a, b := newModel(t, db), newModel(t, db)
	key := newSecretsKey(t)
	const value = "plain-value-93b1"

	sealed, err := key.Seal(a.WorkspaceID, "hf_token", []byte(value))
	require.NoError(t, err)
	first, err := store.UpsertSecret(ctx, db, a.WorkspaceID, "hf_token", sealed)
	require.NoError(t, err)
	resealed, err := key.Seal(a.WorkspaceID, "hf_token", []byte(value+"-2"))
	require.NoError(t, err)
	second, err := store.UpsertSecret(ctx, db, a.WorkspaceID, "hf_token", resealed)
	require.NoError(t, err)
	require.Equal(t, first.ID, second.ID, "an upsert keeps the ID")
	require.True(t, first.CreatedAt.Equal(second.CreatedAt), "an upsert keeps created_at")

	var row []byte
	require.NoError(t, db.GetContext(ctx, &row, `SELECT sealed_value FROM workspace_secrets WHERE id = $1`, first.ID))
	require.NotContains(t, string(row), value, "the row holds no plain value")

	got, err := store.SealedSecrets(ctx, db, a.WorkspaceID, []string{"hf_token", "absent"})
	require.NoError(t, err)
	require.Len(t, got, 1, "only the names the workspace has")
	plain, err := key.Open(a.WorkspaceID, "hf_token", got["hf_token"])
	require.NoError(t, err)
	require.Equal(t, value+"-2", string(plain))

	// The row copied into workspace B (same name) or renamed in A does not open there.
	_, err = store.UpsertSecret(ctx, db, b.WorkspaceID, "hf_token", got["hf_token"])
	require.NoError(t, err)
	moved, err := store.SealedSecrets(ctx, db, b.WorkspaceID, []string{"hf_token"})
	require.NoError(t, err)
	_, err = key.Open(b.WorkspaceID, "hf_token", moved["hf_token"])
	require.True(t, errors.Is(err, secretbox.ErrOpen), "a value moved to another workspace opened: %v", err)
	_, err = key.Open(a.WorkspaceID, "other_name", got["hf_token"])
	require.True(t, errors.Is(err, secretbox.ErrOpen), "a value moved to another name opened: %v", err)

	names, err := store.ListSecrets(ctx, db, b.WorkspaceID)
	require.NoError(t, err)
	require.Len(t, names, 1)
	_, err = store.DeleteSecret(ctx, db, b.WorkspaceID, "hf_token")
	require.NoError(t, err)
	_, err = store.DeleteSecret(ctx, db, b.WorkspaceID, "hf_token")
	require.ErrorIs(t, err, store.ErrNotFound)
	have, err := store.SecretNames(ctx, db, a.WorkspaceID, []string{"hf_token"})
	require.NoError(t, err)
	require.True(t, have["hf_token"], "deleting B's secret leaves A's")
}

func TestSecrets_TheSchemaRefusesNamesTrussRefuses(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	for _, name := range []string{"", ".", "..", "a/b", "a b"} {
		_, err := store.UpsertSecret(context.Background(), db, m.WorkspaceID, name, []byte("x"))
		require.ErrorIs(t, err, store.ErrConstraint, "name %q", name)
	}
}
