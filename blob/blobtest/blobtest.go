// Package blobtest holds the tests every blob.Store passes, whatever keeps the bytes.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/blob"
)

// Harness is one fresh, empty store and a way to see what it keeps besides its blobs.
type Harness struct {
	Store blob.Store
	// Leftovers lists what the store holds that is not a blob: uploads in progress, which a
	// Put must not leave behind.
	Leftovers func() []string
}

// Run runs the conformance tests, each on a store newStore makes.
func Run(t *testing.T, newStore func(t *testing.T) Harness) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, Harness)
	}{
		{"PutIsContentAddressedAndIdempotent", putIsContentAddressed},
		{"PutOverLimitKeepsNothing", putOverLimitKeepsNothing},
		{"PutOfManyPartsKeepsEveryByte", putOfManyParts},
		{"OpenRejectsNonDigests", openRejectsNonDigests},
		{"PutStopsWhenCancelled", putStopsWhenCancelled},
		{"ConcurrentPutsOfTheSameContentKeepOneBlob", concurrentPuts},
		{"OlderAndDeleteIfOlderGoByWhenABlobWasLastStored", olderAndDeleteIfOlder},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, newStore(t))
		})
	}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func read(t *testing.T, s blob.Store, digest string) []byte {
	t.Helper()
	r, n, err := s.Open(context.Background(), digest)
	require.NoError(t, err, "opening %s", digest)
	defer r.Close()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	require.EqualValues(t, len(b), n, "Open's size and the bytes read differ")
	return b
}

func putIsContentAddressed(t *testing.T, h Harness) {
	ctx := context.Background()
	digest, size, created, err := h.Store.Put(ctx, strings.NewReader("hello"), 100)
	require.NoError(t, err)
	require.Equal(t, digestOf([]byte("hello")), digest)
	require.EqualValues(t, 5, size)
	require.True(t, created)

	again, _, created, err := h.Store.Put(ctx, strings.NewReader("hello"), 100)
	require.NoError(t, err)
	require.Equal(t, digest, again)
	require.False(t, created, "the same content is stored once")
	require.Equal(t, "hello", string(read(t, h.Store, digest)))
	require.Empty(t, h.Leftovers(), "a Put leaves nothing but its blob")

	require.NoError(t, h.Store.Delete(ctx, digest))
	_, _, err = h.Store.Open(ctx, digest)
	require.ErrorIs(t, err, blob.ErrNotFound)
	require.NoError(t, h.Store.Delete(ctx, digest), "deleting twice is fine")
}

func putOverLimitKeepsNothing(t *testing.T, h Harness) {
	ctx := context.Background()
	_, _, _, err := h.Store.Put(ctx, strings.NewReader("0123456789"), 9)
	require.ErrorIs(t, err, blob.ErrTooLarge)
	// Past one part of an S3 multipart upload too.
	big := bytes.Repeat([]byte("x"), 17<<20)
	_, _, _, err = h.Store.Put(ctx, bytes.NewReader(big), 17<<20-1)
	require.ErrorIs(t, err, blob.ErrTooLarge)
	all, err := h.Store.Older(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Empty(t, all, "a refused Put stores no blob")
	require.Empty(t, h.Leftovers(), "no partial upload may stay behind")

	_, _, _, err = h.Store.Put(ctx, strings.NewReader("012345678"), 9)
	require.NoError(t, err, "exactly the limit is allowed")
}

func putOfManyParts(t *testing.T, h Harness) {
	big := make([]byte, 37<<20+3)
	for i := range big {
		big[i] = byte(i * 7 / 13)
	}
	digest, size, created, err := h.Store.Put(context.Background(), bytes.NewReader(big), int64(len(big)))
	require.NoError(t, err)
	require.True(t, created)
	require.EqualValues(t, len(big), size)
	require.Equal(t, digestOf(big), digest)
	require.True(t, bytes.Equal(big, read(t, h.Store, digest)), "the bytes read back differ from those stored")
	require.Empty(t, h.Leftovers())
}

func openRejectsNonDigests(t *testing.T, h Harness) {
	for _, bad := range []string{"", "sha256:xyz", "../../etc/passwd", "sha256:" + strings.Repeat("A", 64)} {
		_, _, err := h.Store.Open(context.Background(), bad)
		require.ErrorIs(t, err, blob.ErrNotFound, bad)
		require.NoError(t, h.Store.Delete(context.Background(), bad), bad)
	}
}

func putStopsWhenCancelled(t *testing.T, h Harness) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, _, err := h.Store.Put(ctx, strings.NewReader("x"), 10)
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, h.Leftovers())
}

func concurrentPuts(t *testing.T, h Harness) {
	const n = 6
	content := bytes.Repeat([]byte("same archive "), 1000)
	var (
		wg      sync.WaitGroup
		digests [n]string
		errs    [n]error
		created [n]bool
	)
	for i := range n {
		wg.Go(func() {
			digests[i], _, created[i], errs[i] = h.Store.Put(context.Background(), bytes.NewReader(content), 1<<20)
		})
	}
	wg.Wait()
	some := false
	for i := range n {
		require.NoError(t, errs[i], "put %d", i)
		require.Equal(t, digestOf(content), digests[i], "put %d", i)
		some = some || created[i]
	}
	require.True(t, some, "one of the Puts created the blob")
	require.Equal(t, content, read(t, h.Store, digestOf(content)))
	all, err := h.Store.Older(context.Background(), time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, []string{digestOf(content)}, all, "one blob for one content")
	require.Empty(t, h.Leftovers())
}

// nextSecond sleeps into the next whole second and a little: S3 keeps modification times
// to the second.
func nextSecond() time.Time {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 50*time.Millisecond).Sub(now))
	return time.Now()
}

func olderAndDeleteIfOlder(t *testing.T, h Harness) {
	ctx := context.Background()
	put := func(s string) string {
		d, _, _, err := h.Store.Put(ctx, strings.NewReader(s), 100)
		require.NoError(t, err)
		return d
	}
	old, again := put("old"), put("stored again")
	cutoff := nextSecond()
	nextSecond()
	fresh := put("fresh")

	got, err := h.Store.Older(ctx, cutoff)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{old, again}, got)

	// Put of content that is there makes it new again, so a sweep leaves an upload's blob.
	_, _, created, err := h.Store.Put(ctx, strings.NewReader("stored again"), 100)
	require.NoError(t, err)
	require.False(t, created)
	deleted, err := h.Store.DeleteIfOlder(ctx, again, cutoff)
	require.NoError(t, err)
	require.False(t, deleted, "a blob stored again after the cutoff stays")
	deleted, err = h.Store.DeleteIfOlder(ctx, old, cutoff)
	require.NoError(t, err)
	require.True(t, deleted)
	deleted, err = h.Store.DeleteIfOlder(ctx, fresh, cutoff)
	require.NoError(t, err)
	require.False(t, deleted)
	deleted, err = h.Store.DeleteIfOlder(ctx, old, cutoff)
	require.NoError(t, err)
	require.False(t, deleted, "a blob that is gone is not deleted again")

	got, err = h.Store.Older(ctx, cutoff)
	require.NoError(t, err)
	require.Empty(t, got)
	for _, digest := range []string{again, fresh} {
		read(t, h.Store, digest)
	}
}
