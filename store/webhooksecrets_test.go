package store_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/store"
)

func TestWebhookSecret_NoneUntilRotated(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	_, err := store.GetWebhookSecret(context.Background(), db, m.WorkspaceID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestWebhookSecret_RotateMakesThenReplacesIt(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	other := newModel(t, db)

	first, err := store.RotateWebhookSecret(ctx, db, m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, m.WorkspaceID, first.WorkspaceID)
	raw, ok := strings.CutPrefix(first.Secret, "whsec_")
	require.True(t, ok, "secret %q must start with whsec_", first.Secret)
	b, err := base64.RawURLEncoding.DecodeString(raw)
	require.NoError(t, err, "the part after whsec_ must be unpadded base64url")
	require.Len(t, b, 32, "32 random bytes")
	require.WithinDuration(t, time.Now(), first.CreatedAt, time.Minute)

	got, err := store.GetWebhookSecret(ctx, db, m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, first.Secret, got.Secret)
	require.True(t, first.CreatedAt.Equal(got.CreatedAt))

	second, err := store.RotateWebhookSecret(ctx, db, m.WorkspaceID)
	require.NoError(t, err)
	require.NotEqual(t, first.Secret, second.Secret, "rotation must give a new secret")
	require.False(t, second.CreatedAt.Before(first.CreatedAt))
	got, err = store.GetWebhookSecret(ctx, db, m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, second.Secret, got.Secret, "the rotated secret replaces the old one")

	_, err = store.GetWebhookSecret(ctx, db, other.WorkspaceID)
	require.ErrorIs(t, err, store.ErrNotFound, "another workspace's secret is its own")
}

func TestWebhookSecret_RotateWorksInATransactionAndNeedsAWorkspace(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	var inTx store.WebhookSecret
	require.NoError(t, store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		var err error
		inTx, err = store.RotateWebhookSecret(ctx, tx, m.WorkspaceID)
		return err
	}))
	got, err := store.GetWebhookSecret(ctx, db, m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, inTx.Secret, got.Secret)

	_, err = store.RotateWebhookSecret(ctx, db, "no-such-workspace")
	require.ErrorIs(t, err, store.ErrConflict, "a secret for a workspace that does not exist must be refused")
}
