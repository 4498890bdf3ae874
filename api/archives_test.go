package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

func upload(t *testing.T, e http.Handler, key, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/archives", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Api-Key "+key)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func packDir(t *testing.T, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	var buf bytes.Buffer
	_, err := modelpkg.Pack(dir, &buf)
	require.NoError(t, err)
	return buf.Bytes()
}

func echoPackage(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	_, err := modelpkg.Pack("../examples/models/echo", &buf)
	require.NoError(t, err)
	return buf.Bytes()
}

func TestArchives_UploadIsContentAddressedAndIdempotent(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	body := echoPackage(t)
	sum := sha256.Sum256(body)

	rec := upload(t, f.e, key, "application/gzip", body)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var got apiv1.ArchiveV1
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.Equal(t, "sha256:"+hex.EncodeToString(sum[:]), got.ID)
	require.EqualValues(t, len(body), got.Size)

	again := upload(t, f.e, key, "application/gzip", body)
	require.Equal(t, http.StatusOK, again.Code, "a second upload of the same bytes is answered, not stored again")
	require.JSONEq(t, rec.Body.String(), again.Body.String())

	// The stored config is the package's.
	p, _ := f.workspacePrincipal(t, key)
	a, err := store.ArchiveByID(context.Background(), f.db, p, got.ID)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(a.Config, &cfg))
	require.Equal(t, "echo", cfg["model_name"])
}

func TestArchives_BadPackagesAre400NamingTheProblem(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	var slip bytes.Buffer
	gz := gzip.NewWriter(&slip)
	tw := tar.NewWriter(gz)
	for name, body := range map[string]string{"config.yaml": "model_name: x\n", "../evil": "x"} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, _ = tw.Write([]byte(body))
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())

	tests := []struct {
		name, contentType string
		body              []byte
		want              int
		wantText          string
	}{
		{"no config.yaml", "application/gzip", packDir(t, map[string]string{"model/model.py": "x"}), http.StatusBadRequest, "config.yaml"},
		{"unknown runtime", "application/gzip", packDir(t, map[string]string{"config.yaml": "model_name: x\nruntime: java\n"}), http.StatusBadRequest, "runtime"},
		{"system packages on the python runtime", "application/gzip", packDir(t, map[string]string{"config.yaml": "model_name: x\nsystem_packages: [ffmpeg]\n"}), http.StatusUnprocessableEntity, "use the docker runtime"},
		{"bad resources", "application/gzip", packDir(t, map[string]string{"config.yaml": "model_name: x\nresources:\n  accelerator: H100:99\n"}), http.StatusBadRequest, "resources.accelerator"},
		{"missing model_name", "application/gzip", packDir(t, map[string]string{"config.yaml": "description: no name\n"}), http.StatusBadRequest, "model_name"},
		{"path escaping", "application/gzip", slip.Bytes(), http.StatusBadRequest, "unsafe"},
		{"not gzip", "application/gzip", []byte("plain text"), http.StatusBadRequest, "invalid model package"},
		{"wrong content type", "application/json", echoPackage(t), http.StatusUnsupportedMediaType, "application/gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := upload(t, f.e, key, tt.contentType, tt.body)
			require.Equal(t, tt.want, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), tt.wantText)
		})
	}
}

func TestArchives_OverTheLimitIs413(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	deps := apitest.Deps(t, f.db)
	deps.MaxArchiveBytes = 100
	e := api.New(deps)
	rec := upload(t, e, key, "application/gzip", echoPackage(t))
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "100-byte limit")
}

func TestArchives_NeedAKeyAndAgentsDownloadWithNodeToken(t *testing.T) {
	f := nodeFixture(t)
	require.Equal(t, http.StatusUnauthorized, upload(t, f.e, "", "application/gzip", echoPackage(t)).Code)
	_, _, key := f.workspace(t)
	body := echoPackage(t)
	rec := upload(t, f.e, key, "application/gzip", body)
	require.Equal(t, http.StatusCreated, rec.Code)
	var got apiv1.ArchiveV1
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))

	get := func(id, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/internal/v1/archives/"+id, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, req)
		return rec
	}
	dl := get(got.ID, nodeToken)
	require.Equal(t, http.StatusOK, dl.Code)
	b, _ := io.ReadAll(dl.Body)
	require.Equal(t, body, b, "the agent gets the uploaded bytes")
	require.Equal(t, http.StatusUnauthorized, get(got.ID, "").Code)
	require.Equal(t, http.StatusNotFound, get("sha256:"+hex.EncodeToString(make([]byte, 32)), nodeToken).Code)
}
