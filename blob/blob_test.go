package blob_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/blob/blobtest"
)

func TestDir_PutIsContentAddressedAndIdempotent(t *testing.T) {
	d, err := blob.NewDir(t.TempDir())
	require.NoError(t, err)
	ctx := context.Background()
	sum := sha256.Sum256([]byte("hello"))
	want := "sha256:" + hex.EncodeToString(sum[:])

	digest, size, created, err := d.Put(ctx, strings.NewReader("hello"), 100)
	require.NoError(t, err)
	require.Equal(t, want, digest)
	require.EqualValues(t, 5, size)
	require.True(t, created)

	again, _, created, err := d.Put(ctx, strings.NewReader("hello"), 100)
	require.NoError(t, err)
	require.Equal(t, digest, again)
	require.False(t, created, "the same content is stored once")

	r, n, err := d.Open(ctx, digest)
	require.NoError(t, err)
	b, _ := io.ReadAll(r)
	r.Close()
	require.Equal(t, "hello", string(b))
	require.EqualValues(t, 5, n)

	require.NoError(t, d.Delete(ctx, digest))
	_, _, err = d.Open(ctx, digest)
	require.ErrorIs(t, err, blob.ErrNotFound)
	require.NoError(t, d.Delete(ctx, digest), "deleting twice is fine")
}

func TestDir_PutOverLimitKeepsNothing(t *testing.T) {
	root := t.TempDir()
	d, err := blob.NewDir(root)
	require.NoError(t, err)
	_, _, _, err = d.Put(context.Background(), strings.NewReader("0123456789"), 9)
	require.ErrorIs(t, err, blob.ErrTooLarge)
	left, _ := os.ReadDir(filepath.Join(root, "sha256"))
	require.Empty(t, left)
	tmp, _ := os.ReadDir(d.TempDir())
	require.Empty(t, tmp, "no partial upload may stay behind")

	_, _, _, err = d.Put(context.Background(), strings.NewReader("012345678"), 9)
	require.NoError(t, err, "exactly the limit is allowed")
}

func TestDir_OpenRejectsNonDigests(t *testing.T) {
	d, err := blob.NewDir(t.TempDir())
	require.NoError(t, err)
	for _, bad := range []string{"", "sha256:xyz", "../../etc/passwd", "sha256:" + strings.Repeat("A", 64)} {
		_, _, err := d.Open(context.Background(), bad)
		require.ErrorIs(t, err, blob.ErrNotFound, bad)
	}
}

func TestDir_PutStopsWhenCancelled(t *testing.T) {
	d, err := blob.NewDir(t.TempDir())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, _, err = d.Put(ctx, strings.NewReader("x"), 10)
	require.ErrorIs(t, err, context.Canceled)
}

// age sets a blob's modification time to when.
func age(t *testing.T, root, digest string, when time.Time) {
	t.Helper()
	p := filepath.Join(root, "sha256", strings.TrimPrefix(digest, "sha256:"))
	require.NoError(t, os.Chtimes(p, when, when))
}

func TestDir_OlderAndDeleteIfOlderGoByWhenABlobWasLastStored(t *testing.T) {
	root := t.TempDir()
	d, err := blob.NewDir(root)
	require.NoError(t, err)
	ctx := context.Background()
	old, _, _, err := d.Put(ctx, strings.NewReader("old"), 100)
	require.NoError(t, err)
	again, _, _, err := d.Put(ctx, strings.NewReader("stored again"), 100)
	require.NoError(t, err)
	fresh, _, _, err := d.Put(ctx, strings.NewReader("fresh"), 100)
	require.NoError(t, err)
	hourAgo := time.Now().Add(-time.Hour)
	age(t, root, old, hourAgo.Add(-time.Minute))
	age(t, root, again, hourAgo.Add(-time.Minute))

	got, err := d.Older(ctx, hourAgo)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{old, again}, got)

	// Put of content that is there makes it new again, so a sweep leaves an upload's blob.
	_, _, created, err := d.Put(ctx, strings.NewReader("stored again"), 100)
	require.NoError(t, err)
	require.False(t, created)
	deleted, err := d.DeleteIfOlder(ctx, again, hourAgo)
	require.NoError(t, err)
	require.False(t, deleted)
	deleted, err = d.DeleteIfOlder(ctx, old, hourAgo)
	require.NoError(t, err)
	require.True(t, deleted)
	deleted, err = d.DeleteIfOlder(ctx, fresh, hourAgo)
	require.NoError(t, err)
	require.False(t, deleted)

	got, err = d.Older(ctx, hourAgo)
	require.NoError(t, err)
	require.Empty(t, got)
	for _, digest := range []string{again, fresh} {
		_, _, err := d.Open(ctx, digest)
		require.NoError(t, err)
	}
}

func TestDir_Conformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobtest.Harness {
		d, err := blob.NewDir(t.TempDir())
		require.NoError(t, err)
		return blobtest.Harness{Store: d, Leftovers: func() []string {
			entries, err := os.ReadDir(d.TempDir())
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			return names
		}}
	})
}
