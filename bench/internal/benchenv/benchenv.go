// Package benchenv is what the benchmarks that run a whole dev stack in their own process
// share: the command's main, the stack with the test model (cmd/testmodel) and a database of
// its own, the management API calls, and the report's helpers.
//
// It needs PostgreSQL as the tests use it (internal/pgtest).
package benchenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/modelpkg"
)

// Main runs run until it returns or the process is interrupted, and exits 1 with the error,
// prefixed by name, when it fails.
func Main(name string, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	interrupted := ctx.Err() != nil // before stop, which cancels ctx too
	stop()
	if err != nil {
		if interrupted {
			err = fmt.Errorf("interrupted (%w)", err)
		}
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Options say how Start sets up the stack.
type Options struct {
	// TempPrefix is the prefix of the scratch directory's name.
	TempPrefix string
	// Database is the prefix of the fresh database's name.
	Database string
	// Log is a file for the stack's log (Info and above); empty: not kept.
	Log string
	// Handler makes the stack's log handler from the one that writes Log (nil when there is
	// no Log); nil keeps that one (or no log at all).
	Handler func(next slog.Handler) slog.Handler
	// Stack is the stack's options; Start sets DataDir, Listen, GPUProfile, Postgres and Logger.
	Stack devstack.Options
	// Progress reports what Start is doing.
	Progress func(format string, args ...any)
}

// Env is a running stack, the test model's binary and a scratch directory.
type Env struct {
	Stack    *devstack.Stack
	API      *client.Client // management API
	DBURL    string         // the stack's database
	Dir      string         // scratch: packages are written here
	StackDir string         // the stack's data directory
	Bin      string         // the test model's binary

	cleanup []func()
}

// Start builds the test model into a scratch directory, creates a database and starts the
// stack on it. Close undoes it all, also when Start fails.
func Start(ctx context.Context, o Options) (e *Env, err error) {
	e = &Env{}
	defer func() {
		if err != nil {
			e.Close()
			e = nil
		}
	}()
	if e.Dir, err = os.MkdirTemp("", o.TempPrefix); err != nil {
		return e, err
	}
	dir := e.Dir
	e.cleanup = append(e.cleanup, func() { os.RemoveAll(dir) })
	o.Progress("building the test model")
	e.Bin = filepath.Join(e.Dir, "testmodel")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.Bin, "github.com/modelplane/modelplane/cmd/testmodel")
	if out, err := build.CombinedOutput(); err != nil {
		return e, fmt.Errorf("go build: %w\n%s", err, out)
	}

	dbURL, drop, err := pgtest.Create(o.Database)
	if err != nil {
		return e, err
	}
	e.DBURL = dbURL
	e.cleanup = append(e.cleanup, drop)
	var next slog.Handler
	if o.Log != "" {
		f, err := os.Create(o.Log)
		if err != nil {
			return e, err
		}
		e.cleanup = append(e.cleanup, func() { f.Close() })
		next = slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})
	}

	o.Progress("starting the stack")
	e.StackDir = filepath.Join(e.Dir, "stack")
	opts := o.Stack
	opts.DataDir, opts.Listen, opts.GPUProfile = e.StackDir, "127.0.0.1:0", "none"
	opts.Postgres = devstack.PostgresOptions{DatabaseURL: dbURL}
	h := next
	if o.Handler != nil {
		h = o.Handler(next)
	}
	if h == nil {
		h = slog.NewTextHandler(io.Discard, nil)
	}
	opts.Logger = slog.New(h)
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	e.Stack, err = devstack.Start(startCtx, opts)
	cancel()
	if err != nil {
		return e, fmt.Errorf("starting the stack: %w", err)
	}
	e.API = client.New(e.Stack.APIURL, e.Stack.NewAPIKey)
	return e, nil
}

// Close stops the stack, drops the database and removes the scratch directory.
func (e *Env) Close() error {
	var err error
	if e.Stack != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if cerr := e.Stack.Close(ctx); cerr != nil {
			err = fmt.Errorf("stopping the stack: %w", cerr)
		}
		e.Stack = nil
	}
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
	e.cleanup = nil
	return err
}

// CreateModel packages the test model, started with args, as a process-runtime model and
// creates a model named name from it.
func (e *Env) CreateModel(ctx context.Context, name string, args ...string) (modelID, depID string, err error) {
	pkg := filepath.Join(e.Dir, "pkg-"+name)
	if err := os.Mkdir(pkg, 0o755); err != nil {
		return "", "", err
	}
	bin, err := os.ReadFile(e.Bin)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(pkg, "testmodel"), bin, 0o755); err != nil {
		return "", "", err
	}
	command, _ := json.Marshal(append([]string{"./testmodel"}, args...))
	if err := os.WriteFile(filepath.Join(pkg, "config.yaml"),
		[]byte("model_name: testmodel\ncommand: "+string(command)+"\n"), 0o644); err != nil {
		return "", "", err
	}
	var buf bytes.Buffer
	if _, err := modelpkg.Pack(pkg, &buf); err != nil {
		return "", "", err
	}
	archive, err := e.API.UploadArchive(ctx, &buf)
	if err != nil {
		return "", "", fmt.Errorf("upload the %s package: %w", name, err)
	}
	var created apiv1.CreatedV1
	err = e.Call(ctx, http.MethodPost, "/v1/models", apiv1.CreateModelRequest{Source: apiv1.ModelArchiveSource{
		Kind: apiv1.SourceKindModelArchive, Name: name, S3Key: archive.ID}}, http.StatusOK, &created)
	if err != nil {
		return "", "", err
	}
	return created.Model.ID, created.Deployment.ID, nil
}

// Autoscale sets the deployment's autoscaling settings.
func (e *Env) Autoscale(ctx context.Context, modelID, depID string, settings map[string]any) error {
	return e.Call(ctx, http.MethodPatch, "/v1/models/"+modelID+"/deployments/"+depID+"/autoscaling_settings",
		settings, http.StatusOK, nil)
}

// Call sends a JSON request to the management API, checks the answer's status and decodes
// its body into out when out is not nil.
func (e *Env) Call(ctx context.Context, method, path string, body any, want int, out any) error {
	in, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, e.Stack.APIURL+path, bytes.NewReader(in))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Api-Key "+e.Stack.NewAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s answered %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(got))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(got, out)
}

// WaitFor polls the deployment every `every` until ok holds of it, for at most timeout.
// pause, when not nil, is read-locked around each poll, so that a measurement holding it
// runs without the benchmark's own polling. A build or deploy failure ends the wait at once.
func (e *Env) WaitFor(ctx context.Context, modelID, depID string, every, timeout time.Duration, pause *sync.RWMutex,
	what string, ok func(apiv1.DeploymentV1) bool) (apiv1.DeploymentV1, error) {
	deadline := time.Now().Add(timeout)
	last := "not read yet"
	for {
		if pause != nil {
			pause.RLock()
		}
		d, err := e.API.Deployment(ctx, modelID, depID)
		if pause != nil {
			pause.RUnlock()
		}
		switch {
		case ctx.Err() != nil:
			return d, ctx.Err()
		case err != nil:
			last = err.Error()
		case ok(d):
			return d, nil
		case d.Status == modelplane.DeploymentBuildFailed || d.Status == modelplane.DeploymentDeployFailed:
			return d, fmt.Errorf("deployment %s is %s while waiting for %s", depID, d.Status, what)
		default:
			last = fmt.Sprintf("%s with %d READY", d.Status, d.ActiveReplicaCount)
		}
		if time.Now().After(deadline) {
			return d, fmt.Errorf("deployment %s did not reach %s within %s (last: %s)", depID, what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-time.After(every):
		}
	}
}

// PrintRun prints the report's line that says when, where and in how long it ran.
func PrintRun(took time.Duration) {
	host, _ := os.Hostname()
	fmt.Printf("Run %s on %s (%d CPUs, %s/%s, %s), in %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), took.Round(time.Second))
}

// Percentile is the p-th percentile by nearest rank (0: the smallest); 0 of no values.
func Percentile(v []time.Duration, p float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
