package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/blob"
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

// archiveGet downloads an archive as an agent does: the node token, and the node's name and
// agent ID unless they are empty.
func archiveGet(f *fixture, id, token, node, agentID string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/internal/v1/archives/"+id, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if node != "" {
		req.Header.Set(agentproto.NodeNameHeader, node)
	}
	if agentID != "" {
		req.Header.Set(agentproto.AgentIDHeader, agentID)
	}
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec
}

// deployOn uploads pkg to the model's workspace, deploys it, and places a replica of it on
// the node when node is not empty; it returns the archive's ID.
func deployOn(t *testing.T, f *fixture, m store.Model, key string, pkg []byte, nodeID string) string {
	t.Helper()
	rec := upload(t, f.e, key, "application/gzip", pkg)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var a apiv1.ArchiveV1
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &a))
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, ArchiveID: &a.ID})
	require.NoError(t, err)
	if nodeID != "" {
		_, _, err = store.CreateReplica(ctx, f.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: d.ID, NodeID: nodeID})
		require.NoError(t, err)
	}
	return a.ID
}

// registerNode registers a node by its heartbeat and answers its ID.
func registerNode(t *testing.T, f *fixture, hb agentproto.Heartbeat) string {
	t.Helper()
	rec := heartbeat(t, f, nodeToken, hb)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var out struct {
		NodeID string `json:"node_id"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	return out.NodeID
}

func TestArchives_NeedAKeyAndAgentsDownloadWithNodeToken(t *testing.T) {
	f := nodeFixture(t)
	require.Equal(t, http.StatusUnauthorized, upload(t, f.e, "", "application/gzip", echoPackage(t)).Code)
	m, _, key := f.workspace(t)
	hb := sampleHeartbeat("gpu-" + modelplane.NewID(6))
	hb.AgentID = "agent-" + modelplane.NewID(8)
	nodeID := registerNode(t, f, hb)
	body := packDir(t, map[string]string{"config.yaml": "model_name: placed-" + modelplane.NewID(6) + "\n"})
	id := deployOn(t, f, m, key, body, nodeID)

	dl := archiveGet(f, id, nodeToken, hb.Name, hb.AgentID)
	require.Equal(t, http.StatusOK, dl.Code, dl.Body.String())
	b, _ := io.ReadAll(dl.Body)
	require.Equal(t, body, b, "the agent of the replica's node gets the uploaded bytes")
	require.Equal(t, http.StatusUnauthorized, archiveGet(f, id, "", hb.Name, hb.AgentID).Code)
	require.Equal(t, http.StatusNotFound, archiveGet(f, "sha256:"+hex.EncodeToString(make([]byte, 32)), nodeToken, hb.Name, hb.AgentID).Code)
}

func TestArchives_NodeGetsOnlyTheArchivesOfItsReplicasOthersAre404(t *testing.T) {
	f := nodeFixture(t)
	m, _, key := f.workspace(t)
	other, _, otherKey := f.workspace(t)
	hb := sampleHeartbeat("gpu-" + modelplane.NewID(6))
	hb.AgentID = "agent-" + modelplane.NewID(8)
	nodeID := registerNode(t, f, hb)
	hb2 := sampleHeartbeat("gpu-" + modelplane.NewID(6))
	hb2.AgentID = "agent-" + modelplane.NewID(8)
	for i := range hb2.Replicas {
		hb2.Replicas[i].ID = "rep2"
	}
	otherNodeID := registerNode(t, f, hb2)

	pkg := func(name string) []byte {
		return packDir(t, map[string]string{"config.yaml": "model_name: " + name + "-" + modelplane.NewID(6) + "\n"})
	}
	mine := deployOn(t, f, m, key, pkg("mine"), nodeID)
	otherWorkspaces := deployOn(t, f, other, otherKey, pkg("theirs"), otherNodeID)
	unplaced := deployOn(t, f, m, key, pkg("unplaced"), "")
	elsewhere := deployOn(t, f, m, key, pkg("elsewhere"), otherNodeID)

	require.Equal(t, http.StatusOK, archiveGet(f, mine, nodeToken, hb.Name, hb.AgentID).Code)
	tests := []struct {
		name, id, node, agentID string
	}{
		{"another workspace's deployment placed on another node", otherWorkspaces, hb.Name, hb.AgentID},
		{"a deployment with no replica anywhere", unplaced, hb.Name, hb.AgentID},
		{"a replica placed on another node", elsewhere, hb.Name, hb.AgentID},
		{"no node named", mine, "", ""},
		{"a node name with another node's agent ID", mine, hb.Name, hb2.AgentID},
		{"an unknown node", mine, "gpu-unknown-" + modelplane.NewID(6), hb.AgentID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := archiveGet(f, tt.id, nodeToken, tt.node, tt.agentID)
			require.Equal(t, http.StatusNotFound, rec.Code, "the answer reveals nothing: %s", rec.Body.String())
			require.Contains(t, rec.Body.String(), "not found")
		})
	}
	require.Equal(t, http.StatusOK, archiveGet(f, elsewhere, nodeToken, hb2.Name, hb2.AgentID).Code,
		"the node the replica is placed on gets it")

	var depID string
	require.NoError(t, f.db.GetContext(context.Background(), &depID, `SELECT id FROM deployments WHERE archive_id = $1`, unplaced))
	require.NoError(t, store.RecordEnvBuildNode(context.Background(), f.db, depID, nodeID))
	require.Equal(t, http.StatusOK, archiveGet(f, unplaced, nodeToken, hb.Name, hb.AgentID).Code,
		"a node asked to build the deployment's environment gets its archive")
	require.Equal(t, http.StatusNotFound, archiveGet(f, unplaced, nodeToken, hb2.Name, hb2.AgentID).Code)
}

// zeroPackage is a package of config.yaml and a file of size zero bytes, streamed through
// gzip so that a bomb is built without holding what it unpacks to.
func zeroPackage(t *testing.T, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	tw := tar.NewWriter(gz)
	cfg := "model_name: bomb\n"
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "config.yaml", Mode: 0o644, Size: int64(len(cfg)), Typeflag: tar.TypeReg}))
	_, err = tw.Write([]byte(cfg))
	require.NoError(t, err)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "weights.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}))
	zeros := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(zeros)) {
		_, err := tw.Write(zeros[:min(left, int64(len(zeros)))])
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

func TestArchives_DecompressionBombIs413NamingTheRatio(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	deps := apitest.Deps(t, f.db)
	e := api.New(deps)
	bomb := zeroPackage(t, 256<<20)
	t.Logf("bomb: %d bytes unpacking to %d", len(bomb), 256<<20)

	rec := upload(t, e, key, "application/gzip", bomb)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), fmt.Sprintf("more than %d:1 of its compressed size", modelpkg.DefaultMaxRatio))
	require.Contains(t, rec.Body.String(), "weights.bin")
	left, err := os.ReadDir(deps.ScratchDir)
	require.NoError(t, err)
	require.Empty(t, left, "the check leaves nothing unpacked behind")
	sum := sha256.Sum256(bomb)
	_, _, err = deps.Blobs.Open(context.Background(), "sha256:"+hex.EncodeToString(sum[:]))
	require.Error(t, err, "a refused package is not kept")
}

func TestArchives_OverTheUnpackedLimitIs413NamingIt(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	deps := apitest.Deps(t, f.db)
	deps.MaxUnpackedBytes = 1 << 20
	e := api.New(deps)

	rec := upload(t, e, key, "application/gzip", zeroPackage(t, 2<<20))
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "limit of 1048576 bytes unpacked")

	rec = upload(t, e, key, "application/gzip", zeroPackage(t, 512<<10))
	require.Equal(t, http.StatusCreated, rec.Code, "a package within the limit is taken: %s", rec.Body.String())
}

func TestPrepareModelUpload_BombPutIs413AndLeavesTheKeyFree(t *testing.T) {
	f := newCreateFixture(t, 1<<20)
	payload := map[string]any{"config": configOf(t, greeterConfig), "raw_config": greeterConfig, "deployment_name": "first"}
	r := f.send(t, http.MethodPost, "/v1/prepare_model_upload", f.auth, jsonBody(t, map[string]any{
		"name": "greeter", "deployment": payload}))
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	uploadKey, _ := r.Body["s3_key"].(string)

	rec := put(t, f, f.key, uploadKey, zeroPackage(t, 256<<20))
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), fmt.Sprintf("%d:1", modelpkg.DefaultMaxRatio))

	rec = put(t, f, f.key, uploadKey, greeterPackage(t))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

// failArchiveInserts makes PostgreSQL refuse every archive row of the workspace until the
// test ends, as a database failing mid-upload would.
func failArchiveInserts(t *testing.T, f *fixture, workspaceID string) {
	t.Helper()
	name := "fail_archives_" + workspaceID
	_, err := f.db.Exec(`CREATE FUNCTION ` + name + `() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.workspace_id = '` + workspaceID + `' THEN RAISE EXCEPTION 'injected failure'; END IF;
			RETURN NEW;
		END $$`)
	require.NoError(t, err)
	_, err = f.db.Exec(`CREATE TRIGGER ` + name + ` BEFORE INSERT ON archives FOR EACH ROW EXECUTE FUNCTION ` + name + `()`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = f.db.Exec(`DROP TRIGGER ` + name + ` ON archives`)
		_, _ = f.db.Exec(`DROP FUNCTION ` + name + `()`)
	})
}

func TestArchives_UploadWhoseRowIsNotWrittenLeavesNoBlob(t *testing.T) {
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	deps := apitest.Deps(t, db)
	f := &fixture{db: db, e: api.New(deps)}
	ctx := context.Background()
	_, _, other := f.workspace(t)
	m, _, key := f.workspace(t)
	failArchiveInserts(t, f, m.WorkspaceID)
	digestOf := func(pkg []byte) string {
		sum := sha256.Sum256(pkg)
		return "sha256:" + hex.EncodeToString(sum[:])
	}

	// Bytes of its own: archives of other tests' workspaces refer to the greeter's.
	pkg := packDir(t, map[string]string{
		"config.yaml":    greeterConfig,
		"model/model.py": "class Model:\n    def predict(self, x):\n        return x\n",
		"model/id.txt":   m.WorkspaceID,
	})
	rec := upload(t, f.e, key, "application/gzip", pkg)
	require.Equal(t, http.StatusInternalServerError, rec.Code, rec.Body.String())
	_, _, err = deps.Blobs.Open(ctx, digestOf(pkg))
	require.ErrorIs(t, err, blob.ErrNotFound, "the failed upload took its blob away")

	// The same bytes uploaded by another workspace are its archive: they stay.
	shared := echoPackage(t)
	rec = upload(t, f.e, other, "application/gzip", shared)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	rec = upload(t, f.e, key, "application/gzip", shared)
	require.Equal(t, http.StatusInternalServerError, rec.Code, rec.Body.String())
	r, _, err := deps.Blobs.Open(ctx, digestOf(shared))
	require.NoError(t, err, "a blob another workspace's archive refers to stays")
	r.Close()
}
