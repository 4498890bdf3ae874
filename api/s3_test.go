package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/internal/s3test"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

// s3Prefix returns the package's SeaweedFS (TestMain stops it) and a fresh prefix of its
// bucket for this test.
func s3Prefix(t *testing.T) (*s3test.Server, string) {
	t.Helper()
	return s3test.Shared(t), s3test.Prefix()
}

// s3Fixture is a createFixture whose archives go to the bucket, under a prefix of its own.
type s3Fixture struct {
	*createFixture
	srv    *s3test.Server
	prefix string
}

func newS3CreateFixture(t *testing.T, maxArchiveBytes int64) *s3Fixture {
	t.Helper()
	srv, prefix := s3Prefix(t)
	blobs, err := blob.NewS3(context.Background(), srv.Config(prefix))
	require.NoError(t, err)
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	tc := &fakeTemporal{}
	deps := apitest.Deps(t, db)
	deps.Temporal, deps.MaxArchiveBytes, deps.Blobs = tc, maxArchiveBytes, blobs
	f := &createFixture{fixture: &fixture{db: db, e: api.New(deps)}, tc: tc}
	f.m, _, f.key = f.workspace(t)
	f.auth = "Api-Key " + f.key
	f.archive = f.uploadGreeter(t, f.key)
	return &s3Fixture{createFixture: f, srv: srv, prefix: prefix}
}

// keys lists what the fixture's prefix holds.
func (f *s3Fixture) keys(t *testing.T) []string {
	t.Helper()
	keys, err := f.srv.Keys(context.Background(), f.prefix)
	require.NoError(t, err)
	return keys
}

// blobKey is where the store keeps the blob of digest.
func (f *s3Fixture) blobKey(digest string) string {
	return f.prefix + "sha256/" + strings.TrimPrefix(digest, "sha256:")
}

// prepare asks for an upload of a new model and returns its key and URL.
func (f *s3Fixture) prepare(t *testing.T, payload map[string]any) (key, url string) {
	t.Helper()
	r := f.send(t, http.MethodPost, "/v1/prepare_model_upload", f.auth, jsonBody(t, map[string]any{
		"name": "greeter", "deployment": payload}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	key, _ = r.Body["s3_key"].(string)
	url, _ = r.Body["upload_url"].(string)
	require.True(t, strings.HasPrefix(key, "upl_"), "s3_key %q", key)
	for _, field := range []string{"creds", "s3_bucket", "s3_region"} {
		require.Contains(t, r.Body, field)
		require.Nil(t, r.Body[field], "%s is null: the upload_url is presigned", field)
	}
	return key, url
}

// putPresigned uploads body to a presigned URL as any HTTP client would, with no
// credentials.
func putPresigned(t *testing.T, url string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "PUT to the presigned URL: %s", b)
}

func (f *s3Fixture) createFromKey(t *testing.T, key string, payload map[string]any) response {
	t.Helper()
	return f.send(t, http.MethodPost, "/v1/models", f.auth, jsonBody(t, map[string]any{"source": map[string]any{
		"kind": "model_archive", "name": "greeter", "s3_key": key, "deployment": payload}}))
}

func TestPrepareModelUpload_S3PresignedPutThenCreateStoresTheArchiveByDigest(t *testing.T) {
	f := newS3CreateFixture(t, 1<<20)
	payload := map[string]any{"config": configOf(t, greeterConfig), "raw_config": greeterConfig, "deployment_name": "first"}
	key, url := f.prepare(t, payload)
	require.True(t, strings.HasPrefix(url, f.srv.Endpoint+"/"+f.srv.Bucket+"/"+f.prefix+"uploads/"+key+"?"),
		"upload_url %q is a presigned URL of the bucket", url)
	require.Contains(t, url, "X-Amz-Signature=")

	c := f.createFromKey(t, key, payload)
	require.Equal(t, http.StatusConflict, c.Status, "%v", c.Body)
	require.Contains(t, message(c), "nothing was uploaded")

	// Bytes of this test's own, so that the archive is not the fixture's.
	pkg := packDir(t, map[string]string{
		"config.yaml":    greeterConfig,
		"model/model.py": "class Model:\n    def predict(self, x):\n        return x\n",
		"model/id.txt":   rand.Text(),
	})
	sum := sha256.Sum256(pkg)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	putPresigned(t, url, pkg)
	require.Contains(t, f.keys(t), f.prefix+"uploads/"+key)

	c = f.createFromKey(t, key, payload)
	require.Equal(t, http.StatusOK, c.Status, "%v", c.Body)
	modelID, depID := ids(t, c)
	require.Equal(t, digest, *f.deployment(t, modelID, depID).ArchiveID, "the upload is an archive by its digest")
	a, err := store.ArchiveByID(context.Background(), f.db, f.m.WorkspaceID, digest)
	require.NoError(t, err)
	require.EqualValues(t, len(pkg), a.SizeBytes)
	require.ElementsMatch(t, []string{f.blobKey(f.archive), f.blobKey(digest)}, f.keys(t),
		"the upload object is gone once the archive is stored under its digest")

	// The key names its archive from now on.
	d := f.send(t, http.MethodPost, "/v1/models/"+modelID+"/deployments", f.auth, jsonBody(t, map[string]any{"source": map[string]any{
		"kind": "model_archive", "s3_key": key, "deployment": map[string]any{"config": configOf(t, greeterConfig)}}}))
	require.Equal(t, http.StatusOK, d.Status, "%v", d.Body)
	_, depID = ids(t, d)
	require.Equal(t, digest, *f.deployment(t, modelID, depID).ArchiveID)
}

func TestPrepareModelUpload_S3RefusedPackagesLeaveNothing(t *testing.T) {
	f := newS3CreateFixture(t, 1<<20)
	payload := map[string]any{"config": configOf(t, greeterConfig), "raw_config": greeterConfig, "deployment_name": "first"}
	key, url := f.prepare(t, payload)
	oversize := make([]byte, 1<<20+1)
	_, _ = rand.Read(oversize)
	for _, tc := range []struct {
		name string
		body []byte
		want int
		text string
	}{
		{"a bomb", zeroPackage(t, 256<<20), http.StatusRequestEntityTooLarge, fmt.Sprintf("%d:1", modelpkg.DefaultMaxRatio)},
		{"over the size limit", oversize, http.StatusRequestEntityTooLarge, "over the 1048576-byte limit"},
		{"not a tar.gz", []byte("not a tar.gz"), http.StatusBadRequest, "invalid model package"},
		{"no config", packDir(t, map[string]string{"model/model.py": "x = 1\n"}), http.StatusBadRequest, "config.yaml"},
	} {
		putPresigned(t, url, tc.body)
		c := f.createFromKey(t, key, payload)
		require.Equal(t, tc.want, c.Status, "%s: %v", tc.name, c.Body)
		require.Contains(t, message(c), tc.text, tc.name)
		require.Equal(t, []string{f.blobKey(f.archive)}, f.keys(t), "%s: neither the upload nor a blob is left", tc.name)
		u, err := store.UploadByKey(context.Background(), f.db, f.m.WorkspaceID, key)
		require.NoError(t, err)
		require.Nil(t, u.ArchiveID, "%s: the key stays free", tc.name)
	}

	// The key takes a good package after the refused ones.
	putPresigned(t, url, greeterPackage(t))
	c := f.createFromKey(t, key, payload)
	require.Equal(t, http.StatusOK, c.Status, "%v", c.Body)
	require.Equal(t, []string{f.blobKey(f.archive)}, f.keys(t))
}
