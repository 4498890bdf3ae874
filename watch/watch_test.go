package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/patch"
)

func TestDescribe_NamesWhatAPatchChanges(t *testing.T) {
	v := "x"
	cfg := "model_name: m\n"
	code := func(action, path string) patch.Op {
		return patch.Op{Type: patch.TypeModelCode, Action: action, Path: path}
	}
	for _, tt := range []struct {
		name string
		ops  []patch.Op
		want string
	}{
		{"one file", []patch.Op{code(patch.ActionUpdate, "model/model.py")}, "model/model.py"},
		{"added and removed", []patch.Op{code(patch.ActionRemove, "model/old.py"), code(patch.ActionAdd, "model/new.py")}, "-model/old.py, +model/new.py"},
		{"config with its variables", []patch.Op{
			{Type: patch.TypeConfig, Action: patch.ActionUpdate, Content: &cfg},
			{Type: patch.TypeEnvironment, Action: patch.ActionUpdate, Name: "B", Value: &v},
			{Type: patch.TypeEnvironment, Action: patch.ActionRemove, Name: "A"},
		}, "config.yaml (A, B)"},
		{"many files", []patch.Op{code(patch.ActionUpdate, "a"), code(patch.ActionUpdate, "b"), code(patch.ActionUpdate, "c"),
			code(patch.ActionUpdate, "d"), code(patch.ActionUpdate, "e"), code(patch.ActionUpdate, "f"), code(patch.ActionUpdate, "g")},
			"a, b, c, d, e, and 2 more"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, describe(tt.ops))
		})
	}
}

func TestIgnored_SkipsWhatIsNeverPartOfAPackage(t *testing.T) {
	root := "/pkg"
	for path, want := range map[string]bool{
		"model/model.py":                  false,
		"config.yaml":                     false,
		"model/.model.py.swp":             true,
		"model/model.py~":                 true,
		"model/__pycache__/model.pyc":     true,
		".git/index":                      true,
		"data/weights.bin":                false,
		"model/.#model.py":                true,
		"packages/lib/__pycache__/x.pyc":  true,
		"packages/lib/helpers/helpers.py": false,
	} {
		assert.Equal(t, want, ignored(root, filepath.Join(root, path)), path)
	}
}

// fakeAPI is the part of the API the watch uses, for one model whose development deployment
// takes every patch staged against its newest point.
type fakeAPI struct {
	mu     sync.Mutex
	pushed bool
	head   patch.Point
	staged []patch.Point
	syncs  int
	// onStage runs as a patch is staged, with the point it staged.
	onStage func(patch.Point)
}

func (f *fakeAPI) server(t *testing.T) *client.Client {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		require.NoError(t, json.NewEncoder(w).Encode(v))
	}
	state := func() apiv1.PatchStateV1 {
		return apiv1.PatchStateV1{DeploymentID: "dev", PatchHash: f.head.Hash(), PatchPoint: apiv1.PatchPointWithHashV1{
			ContentHashes: f.head.ContentHashes, Config: f.head.Config, Hash: f.head.Hash(),
		}}
	}
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		list := apiv1.ModelListV1{Models: []apiv1.ModelV1{}}
		if f.pushed {
			dev := "dev"
			list.Models = append(list.Models, apiv1.ModelV1{ID: "m1", Name: "echo", DevelopmentDeploymentID: &dev})
		}
		reply(w, list)
	})
	mux.HandleFunc("GET /v1/models/m1/deployments/development/patches", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		reply(w, state())
	})
	mux.HandleFunc("POST /v1/models/m1/deployments/development/patches", func(w http.ResponseWriter, r *http.Request) {
		var req apiv1.PatchRequest
		require.NoError(t, json.NewDecoder(r.Body).Decode(&req))
		f.mu.Lock()
		require.Equal(t, f.head.Hash(), req.PrevPatchHash)
		f.head = req.NextPatchPoint
		f.staged = append(f.staged, req.NextPatchPoint)
		onStage, st := f.onStage, state()
		f.mu.Unlock()
		if onStage != nil {
			onStage(req.NextPatchPoint)
		}
		reply(w, st)
	})
	mux.HandleFunc("POST /v1/models/m1/deployments/development/patches/sync", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.syncs++
		reply(w, apiv1.PatchSyncV1{PatchHash: f.head.Hash(), How: "hot_reload"})
	})
	mux.HandleFunc("POST /v1/models/m1/deployments/development/keep_awake", func(w http.ResponseWriter, r *http.Request) {
		reply(w, apiv1.KeepAwakeV1{DeploymentID: "dev"})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return client.New(srv.URL, "key")
}

// push deploys dir as it is now.
func (f *fakeAPI) push(dir string) error {
	p, err := patch.FromDir(dir)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pushed, f.head = true, p
	return nil
}

// deployed is the hash of the file at rel in the deployment's newest point.
func (f *fakeAPI) deployed(rel string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h := f.head.ContentHashes[rel]; h != nil {
		return *h
	}
	return ""
}

func (f *fakeAPI) counts() (staged, syncs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.staged), f.syncs
}

// lines collects what the watch prints.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

const (
	oldModel      = "class Model:\n    def predict(self, x):\n        return 'old'\n"
	newModel      = "class Model:\n    def predict(self, x):\n        return 'new'\n"
	testDebounce  = 30 * time.Millisecond
	modelPath     = "model/model.py"
	waitForChange = 5 * time.Second
)

// echoPackage writes a package whose model/model.py is oldModel.
func echoPackage(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("model_name: echo\nhot_reload: true\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, modelPath), []byte(oldModel), 0o644))
	return dir
}

// startWatch runs the watch on dir until the test ends, and returns once it watches.
func startWatch(t *testing.T, dir string, api *fakeAPI) *lines {
	out := &lines{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Dir: dir, Client: api.server(t), Out: out, Debounce: testDebounce,
			Push: func(context.Context) error { return api.push(dir) }})
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "watching ") }, waitForChange, time.Millisecond, "the watch did not start")
	return out
}

// replace sets *v to x for the rest of the test.
func replace[T any](t *testing.T, v *T, x T) {
	old := *v
	*v = x
	t.Cleanup(func() { *v = old })
}

func sum(s string) string { return patch.SumHex([]byte(s)) }

func TestRun_SyncsAFileChangedAfterThePushBeforeTheWatchStarted(t *testing.T) {
	dir := echoPackage(t)
	api := &fakeAPI{}
	start := watchTree
	replace(t, &watchTree, func(d string) (*fsnotify.Watcher, error) {
		// Saved after the push's snapshot and its first sync, before any event is watched for.
		require.NoError(t, os.WriteFile(filepath.Join(d, modelPath), []byte(newModel), 0o644))
		return start(d)
	})
	out := startWatch(t, dir, api)

	require.Eventually(t, func() bool { return api.deployed(modelPath) == sum(newModel) }, waitForChange, time.Millisecond,
		"the deployment never got the file saved before the watch started:\n%s", out)
}

func TestRun_SyncsTheRestOfAFileCompletedAfterItsSyncReadIt(t *testing.T) {
	half := newModel[:len(newModel)/2] // "class Model:\n    def pre": no class Model the server could load
	for _, tt := range []struct {
		name string
		// completeWhen lets the test finish the file at one moment of the sync.
		completeWhen func(api *fakeAPI, complete func())
	}{
		{"after the half was staged", func(api *fakeAPI, complete func()) {
			api.onStage = func(p patch.Point) {
				if h := p.ContentHashes[modelPath]; h != nil && *h == sum(half) {
					complete()
				}
			}
		}},
		{"between the sync's reading of the directory and of the file", func(api *fakeAPI, complete func()) {
			replace(t, &afterRead, complete)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := echoPackage(t)
			file := filepath.Join(dir, modelPath)
			api := &fakeAPI{}
			var once sync.Once
			completed := make(chan struct{})
			tt.completeWhen(api, func() {
				if b, err := os.ReadFile(file); err == nil && string(b) == half {
					once.Do(func() {
						require.NoError(t, os.WriteFile(file, []byte(newModel), 0o644))
						close(completed)
					})
				}
			})
			// A file watcher that watches nothing: the test delivers the events, and none for
			// the write that completes the file.
			watchers := make(chan *fsnotify.Watcher, 1)
			replace(t, &watchTree, func(string) (*fsnotify.Watcher, error) {
				fsw, err := fsnotify.NewWatcher()
				watchers <- fsw
				return fsw, err
			})
			out := startWatch(t, dir, api)
			fsw := <-watchers

			require.NoError(t, os.WriteFile(file, []byte(half), 0o644))
			fsw.Events <- fsnotify.Event{Name: file, Op: fsnotify.Write}

			select {
			case <-completed:
			case <-time.After(waitForChange):
				require.Fail(t, "no sync read the half-written file", "%s", out)
			}
			require.Eventually(t, func() bool { return api.deployed(modelPath) == sum(newModel) }, waitForChange, time.Millisecond,
				"the deployment kept the half-written file:\n%s", out)
		})
	}
}

func TestRun_SendsNothingMoreWhileTheFilesMatchTheDeployment(t *testing.T) {
	dir := echoPackage(t)
	api := &fakeAPI{}
	startWatch(t, dir, api)

	time.Sleep(10 * testDebounce)
	staged, syncs := api.counts()
	assert.Equal(t, 0, staged, "nothing changed since the push")
	assert.Equal(t, 1, syncs, "the first sync only")

	// One save, in one event: the new file renamed into place.
	tmp := filepath.Join(t.TempDir(), "model.py")
	require.NoError(t, os.WriteFile(tmp, []byte(newModel), 0o644))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, modelPath)))
	require.Eventually(t, func() bool { return api.deployed(modelPath) == sum(newModel) }, waitForChange, time.Millisecond)
	time.Sleep(10 * testDebounce)
	staged, syncs = api.counts()
	assert.Equal(t, 1, staged, "one patch for the save")
	assert.Equal(t, 2, syncs, "one sync for the save")
}

func TestRun_LeavesASaveThatFailedToSyncForTheNextSave(t *testing.T) {
	dir := echoPackage(t)
	api := &fakeAPI{}
	out := startWatch(t, dir, api)

	// A config.yaml that does not parse fails every sync until it is saved again: the checks
	// must not try it again and again.
	tmp := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(tmp, []byte("model_name: [echo\n"), 0o644))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, "config.yaml")))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "error: config.yaml") }, waitForChange, time.Millisecond)
	time.Sleep(10 * testDebounce)
	assert.Equal(t, 1, strings.Count(out.String(), "error: "), "one failed sync for the one save:\n%s", out)
	staged, syncs := api.counts()
	assert.Equal(t, 0, staged)
	assert.Equal(t, 1, syncs, "the first sync only")
}
