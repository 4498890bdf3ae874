package blob_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/blob/blobtest"
	"github.com/modelplane/modelplane/internal/s3test"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// newS3 is a store in the test server's bucket, under a prefix of its own.
func newS3(t *testing.T) (*blob.S3, *s3test.Server, string) {
	t.Helper()
	srv := s3test.Shared(t)
	prefix := s3test.Prefix()
	s, err := blob.NewS3(context.Background(), srv.Config(prefix))
	require.NoError(t, err)
	return s, srv, prefix
}

func TestS3_Conformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobtest.Harness {
		s, srv, p := newS3(t)
		return blobtest.Harness{Store: s, Leftovers: func() []string {
			keys, err := srv.Keys(context.Background(), p+"tmp/")
			require.NoError(t, err)
			return keys
		}}
	})
}

func TestS3_KeysAreUnderThePrefix(t *testing.T) {
	s, srv, p := newS3(t)
	ctx := context.Background()
	digest, _, _, err := s.Put(ctx, strings.NewReader("prefixed"), 100)
	require.NoError(t, err)
	keys, err := srv.Keys(ctx, p)
	require.NoError(t, err)
	require.Equal(t, []string{p + "sha256/" + strings.TrimPrefix(digest, "sha256:")}, keys)
}

func TestS3_NewRefusesAMissingBucket(t *testing.T) {
	srv := s3test.Shared(t)
	cfg := srv.Config("")
	cfg.Bucket = "no-such-bucket-here"
	_, err := blob.NewS3(context.Background(), cfg)
	require.ErrorContains(t, err, `bucket "no-such-bucket-here"`)
}

func TestS3_PresignedUploadIsReadBackAndDeleted(t *testing.T) {
	s, srv, p := newS3(t)
	ctx := context.Background()
	url, err := s.PresignUpload(ctx, "upl_one", time.Minute)
	require.NoError(t, err)

	_, _, err = s.OpenUpload(ctx, "upl_one")
	require.ErrorIs(t, err, blob.ErrNotFound, "nothing uploaded yet")

	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader([]byte("archive bytes")))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "PUT to the presigned URL: %s", body)

	r, n, err := s.OpenUpload(ctx, "upl_one")
	require.NoError(t, err)
	b, _ := io.ReadAll(r)
	r.Close()
	require.Equal(t, "archive bytes", string(b))
	require.EqualValues(t, len(b), n)

	require.NoError(t, s.DeleteUpload(ctx, "upl_one"))
	keys, err := srv.Keys(ctx, p)
	require.NoError(t, err)
	require.Empty(t, keys)
}

func TestS3_PresignedUploadURLTakesNoOtherKey(t *testing.T) {
	s, _, _ := newS3(t)
	url, err := s.PresignUpload(context.Background(), "upl_one", time.Minute)
	require.NoError(t, err)
	other := strings.Replace(url, "upl_one", "upl_two", 1)
	req, _ := http.NewRequest(http.MethodPut, other, strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a signature is for its own key")
}

func TestS3_DeleteUploadsOlderRemovesOnlyOldUploads(t *testing.T) {
	s, srv, p := newS3(t)
	ctx := context.Background()
	put := func(name string) {
		url, err := s.PresignUpload(ctx, name, time.Minute)
		require.NoError(t, err)
		req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(name))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	put("upl_old")
	digest, _, _, err := s.Put(ctx, strings.NewReader("a blob"), 100)
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond)
	cutoff := time.Now()
	time.Sleep(1100 * time.Millisecond)
	put("upl_new")

	n, err := s.DeleteUploadsOlder(ctx, cutoff)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	keys, err := srv.Keys(ctx, p)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{p + "uploads/upl_new", p + "sha256/" + strings.TrimPrefix(digest, "sha256:")}, keys,
		"blobs are not uploads")
}

func TestS3_PresignedDownloadReadsTheBlob(t *testing.T) {
	s, _, _ := newS3(t)
	ctx := context.Background()
	digest, _, _, err := s.Put(ctx, strings.NewReader("for an agent"), 100)
	require.NoError(t, err)
	url, err := s.PresignDownload(ctx, digest, time.Minute)
	require.NoError(t, err)
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	require.Equal(t, "for an agent", string(b))
	_, err = s.PresignDownload(ctx, "../etc/passwd", time.Minute)
	require.ErrorIs(t, err, blob.ErrNotFound)
}
