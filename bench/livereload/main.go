// Command livereload measures how long an edit of the development deployment takes to be
// served, on a whole dev stack run in this process (embedded Temporal, PostgreSQL, the
// gateway, the worker and the local node agent), with the echo example (the python runtime,
// hot_reload: true) as the model and `modelplane watch`'s loop (package watch) watching a
// copy of it:
//
//   - Hot reload: model/model.py is rewritten with a new answer; the time is from the write
//     until predict on the development deployment answers with it.
//   - Restart in place: config.yaml's ECHO_GREETING changes; timed the same way.
//   - Baseline, measured in the same run: the same edit of model.py shipped as a full push of
//     the development deployment (pack, upload, a new deployment, its replica started),
//     timed the same way.
//
// It prints a markdown section, which bench/run adds to RESULTS.md. It needs PostgreSQL as
// the tests use it (internal/pgtest) and python3.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/bench/internal/benchenv"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/watch"
)

// Timings of the benchmark itself.
const (
	// servedTimeout bounds the wait for one edit to be served.
	servedTimeout = 2 * time.Minute
	// pollEvery is how often predict is sent while an edit is on its way.
	pollEvery = 10 * time.Millisecond
)

// modelName names the benchmark's model.
const modelName = "echo-livereload"

type config struct {
	Edits    int    // hot-reload edits measured
	Restarts int    // restart-in-place edits measured
	Pushes   int    // full pushes measured, the baseline
	Example  string // the package to copy
	Log      string
}

func main() {
	var c config
	flag.IntVar(&c.Edits, "edits", 20, "hot-reload edits to measure")
	flag.IntVar(&c.Restarts, "restarts", 5, "restart-in-place edits to measure")
	flag.IntVar(&c.Pushes, "pushes", 5, "full pushes to measure (the baseline)")
	flag.StringVar(&c.Example, "example", "examples/models/echo", "the python package to edit")
	flag.StringVar(&c.Log, "log", "", "a file for the stack's log (default: not kept)")
	flag.Parse()
	benchenv.Main("bench/livereload", func(ctx context.Context) error { return run(ctx, c) })
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/livereload: "+format+"\n", args...)
}

type bench struct {
	*benchenv.Env
	dir string // the package being edited

	mu      sync.Mutex
	modelID string // set by the first push, which watch makes
}

func (b *bench) model() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.modelID
}

func run(ctx context.Context, c config) (err error) {
	began := time.Now()
	env, err := benchenv.Start(ctx, benchenv.Options{
		TempPrefix: "modelplane-bench-livereload-", Database: "benchlivereload", Log: c.Log, Progress: progress,
	})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := env.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	b := &bench{Env: env, dir: filepath.Join(env.Dir, "pkg")}
	if err := copyPackage(c.Example, b.dir); err != nil {
		return err
	}
	if err := b.replace("config.yaml", "model_name: echo", "model_name: "+modelName); err != nil {
		return err
	}

	wctx, cancel := context.WithCancel(ctx)
	watched := make(chan error, 1)
	lines := &proctest.Buffer{}
	go func() {
		watched <- watch.Run(wctx, watch.Options{Dir: b.dir, Client: b.API, Out: lines, Push: b.push})
	}()
	var stopOnce sync.Once
	var watchErr error
	stopWatch := func() error {
		stopOnce.Do(func() { cancel(); watchErr = <-watched })
		return watchErr
	}
	defer func() {
		if werr := stopWatch(); werr != nil && err == nil {
			err = werr
		}
		if err != nil {
			progress("watch printed:\n%s", lines.String())
		}
	}()
	progress("waiting for watch to push the development deployment")
	if err := b.waitAnswer(ctx, "greeting", "hello"); err != nil {
		return err
	}

	progress("%d hot-reload edits", c.Edits)
	hot, err := b.edits(ctx, c.Edits, "revision", func(want string) error { return b.setRevision(want) })
	if err != nil {
		return err
	}
	progress("%d restart-in-place edits", c.Restarts)
	greeting := "hello"
	restart, err := b.edits(ctx, c.Restarts, "greeting", func(want string) error {
		err := b.replace("config.yaml", "ECHO_GREETING: "+greeting, "ECHO_GREETING: "+want)
		greeting = want
		return err
	})
	if err != nil {
		return err
	}
	// The baseline: watch stops, and each edit is shipped as a new development deployment.
	if err := stopWatch(); err != nil {
		return err
	}
	progress("%d full pushes (the baseline)", c.Pushes)
	full, err := b.edits(ctx, c.Pushes, "revision", func(want string) error {
		if err := b.setRevision(want); err != nil {
			return err
		}
		return b.push(ctx)
	})
	if err != nil {
		return err
	}
	report(c, hot, restart, full, time.Since(began))
	return nil
}

// edits makes n edits, each writing a new value of the answer's field, and returns how long
// each took to be served: until predict answers with it.
func (b *bench) edits(ctx context.Context, n int, field string, edit func(want string) error) ([]time.Duration, error) {
	var out []time.Duration
	for i := range n {
		want := fmt.Sprintf("%s-%d-%d", field, time.Now().UnixNano()%1e6, i)
		start := time.Now()
		if err := edit(want); err != nil {
			return nil, err
		}
		if err := b.waitAnswer(ctx, field, want); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
		// Saves further apart than watch's debounce, as a person's are.
		time.Sleep(300 * time.Millisecond)
	}
	return out, nil
}

// setRevision makes the model answer with "revision": rev.
func (b *bench) setRevision(rev string) error {
	p := filepath.Join(b.dir, "model", "model.py")
	src, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	s := string(src)
	if i := strings.Index(s, `            "revision": `); i >= 0 {
		j := strings.Index(s[i:], "\n")
		s = s[:i] + s[i+j+1:]
	}
	const anchor = `            "greeting": self._greeting,` + "\n"
	if !strings.Contains(s, anchor) {
		return fmt.Errorf("%s has no line %q to add the revision after", p, strings.TrimSpace(anchor))
	}
	s = strings.Replace(s, anchor, anchor+fmt.Sprintf("            \"revision\": %q,\n", rev), 1)
	return os.WriteFile(p, []byte(s), 0o644)
}

func (b *bench) replace(rel, old, new string) error {
	p := filepath.Join(b.dir, rel)
	src, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if !bytes.Contains(src, []byte(old)) {
		return fmt.Errorf("%s has no %q", rel, old)
	}
	return os.WriteFile(p, bytes.Replace(src, []byte(old), []byte(new), 1), 0o644)
}

// waitAnswer polls predict on the development deployment until its answer has field = want.
func (b *bench) waitAnswer(ctx context.Context, field, want string) error {
	deadline := time.Now().Add(servedTimeout)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		if id := b.model(); id != "" {
			out, err := b.API.Predict(ctx, id, client.DevelopmentTarget(), []byte(`{"text": "hi"}`))
			var answer map[string]any
			switch {
			case err != nil:
				last = err.Error()
			case json.Unmarshal(out, &answer) != nil:
				last = string(out)
			case answer[field] == want:
				return nil
			default:
				last = string(out)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
	return fmt.Errorf("the development deployment did not answer %s=%q within %s (last: %s)", field, want, servedTimeout, last)
}

// push ships the package as the model's development deployment, creating the model the first
// time, and waits until the new deployment is ACTIVE.
func (b *bench) push(ctx context.Context) error {
	var buf bytes.Buffer
	if _, err := modelpkg.Pack(b.dir, &buf); err != nil {
		return err
	}
	a, err := b.API.UploadArchive(ctx, &buf)
	if err != nil {
		return err
	}
	var d apiv1.DeploymentV1
	id := b.model()
	if id == "" {
		var m apiv1.ModelV1
		m, d, err = b.API.CreateModel(ctx, apiv1.CreateModelRequest{Development: true,
			Source: apiv1.ModelArchiveSource{Name: modelName, ArchiveID: a.ID}})
		id = m.ID
	} else {
		_, d, err = b.API.CreateDeployment(ctx, id, apiv1.CreateDeploymentRequest{Development: true,
			Source: apiv1.DeploymentArchiveSource{ArchiveID: a.ID}})
	}
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.modelID = id
	b.mu.Unlock()
	_, err = b.WaitFor(ctx, id, d.ID, 20*time.Millisecond, servedTimeout, nil, string(modelplane.DeploymentActive),
		func(d apiv1.DeploymentV1) bool { return d.Status == modelplane.DeploymentActive })
	return err
}

func report(c config, hot, restart, full []time.Duration, took time.Duration) {
	p50 := func(v []time.Duration) time.Duration { return benchenv.Percentile(v, 50) }
	fmt.Println("## Live reload")
	fmt.Println()
	benchenv.PrintRun(took)
	fmt.Printf("The echo example (python runtime, `hot_reload: true`) as the development deployment, watched by\n")
	fmt.Printf("`modelplane watch`'s loop; each edit is timed from the file's write until predict on the\n")
	fmt.Printf("development deployment answers with it. Baseline: the same model.py edit shipped as a full\n")
	fmt.Printf("push of the development deployment (pack, upload, new deployment, replica started), in the same run.\n\n")
	fmt.Println("| change | edits | p50 | p95 | max | p50 ÷ full push p50 |")
	fmt.Println("|---|---|---|---|---|---|")
	row := func(name string, v []time.Duration) {
		fmt.Printf("| %s | %d | %s | %s | %s | %.3fx |\n", name, len(v), ms(p50(v)), ms(benchenv.Percentile(v, 95)),
			ms(benchenv.Percentile(v, 100)), float64(p50(v))/float64(p50(full)))
	}
	row("model.py, hot reload", hot)
	row("config.yaml variable, restart in place", restart)
	row("model.py, full push (baseline)", full)
	fmt.Println()
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// copyPackage copies a package directory by packing and unpacking it, so the copy holds what
// a push would.
func copyPackage(src, dst string) error {
	var buf bytes.Buffer
	if _, err := modelpkg.Pack(src, &buf); err != nil {
		return err
	}
	_, err := modelpkg.Extract(&buf, "", dst)
	return err
}
