// Command prewarm measures the cold start of a Truss model whose imports take seconds, started
// by a node agent (run in this process, with the process runtime) from a cold interpreter
// and from a warm interpreter of its Python environment (runtime.Prewarm): the fork server
// or, when the agent runs as root and its replicas as users of their own, the warm spare.
// The agent runs as this process does (its state directory is reachable by replica users),
// and the output says which way it started replicas:
//
//   - The model imports a generated package, mp_bench_heavy, of many submodules whose import
//     spends -import-seconds of CPU, as torch's does on a GPU host. It lies in a directory
//     on PYTHONPATH, as a package installed in the model's environment would. -module torch
//     imports torch instead, installed for python3 (MODELPLANE_PYTHON), on a GPU host.
//   - A start is timed from the agent's POST /v1/replicas until the replica is READY: its
//     first successful health check.
//   - Baseline, measured in the same run: the same starts with --python-prewarm=false.
//   - Pre-warmed: the package named in runtime.prewarm_imports, and, on another agent, not
//     named but learned from the first replica (a root agent's replicas teach nothing: that
//     row then shows it). The first start of each (the warm interpreter still importing) is
//     a warm-up and not counted. A spare serves one start: with spares, each start waits for
//     the next spare to be ready, as starts spread out in time would find it.
//
// It prints a markdown section, which bench/run adds to RESULTS.md. It needs python3.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/agent/runtime/process"
	"github.com/modelplane/modelplane/bench/internal/benchenv"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/nvml"
	"github.com/modelplane/modelplane/runtime/python"
)

// generatedPackage is the generated package the model imports unless -module names another.
const generatedPackage = "mp_bench_heavy"

const token = "prewarm-bench-node-token-0123456789"

// startTimeout bounds one replica's start.
const startTimeout = 2 * time.Minute

type config struct {
	Samples       int
	ImportSeconds float64
	Submodules    int
	// Module is the module the model imports: generatedPackage, or an installed one (torch
	// on a GPU host), which is then not generated.
	Module string
}

func main() {
	var c config
	flag.IntVar(&c.Samples, "samples", 5, "starts measured per row")
	flag.Float64Var(&c.ImportSeconds, "import-seconds", 2, "CPU seconds the generated package's import spends")
	flag.IntVar(&c.Submodules, "submodules", 200, "submodules of the generated package")
	flag.StringVar(&c.Module, "module", generatedPackage, "the module the model imports; another than "+generatedPackage+" must be installed for python3 (torch on a GPU host)")
	flag.Parse()
	benchenv.Main("bench/prewarm", func(ctx context.Context) error { return run(ctx, c) })
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/prewarm: "+format+"\n", args...)
}

// row is one way of starting, measured.
type row struct {
	name   string
	starts []time.Duration
	forked int // starts from a warm interpreter
}

// Ways the agent starts a replica from a warm interpreter (agentproto.Isolation's mode).
const (
	modeForkServer = "fork server (replicas run as the agent's user)"
	modeSpare      = "warm spare (replicas run as replica users)"
)

func run(ctx context.Context, c config) error {
	began := time.Now()
	work, err := os.MkdirTemp("", "mpw")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// Replica users, when the agent runs as root, reach its state directories here: the
	// agent isolates them as it would on a host.
	if err := os.Chmod(work, 0o711); err != nil {
		return err
	}
	if c.Module == generatedPackage {
		lib := filepath.Join(work, "lib")
		if err := writeHeavyPackage(lib, c); err != nil {
			return err
		}
		// The agent's replicas and fork servers take PYTHONPATH from the agent's environment.
		if err := os.Setenv("PYTHONPATH", lib); err != nil {
			return err
		}
	}
	declared, err := modelPackage(work, "declared", c.Module, true)
	if err != nil {
		return err
	}
	plain, err := modelPackage(work, "plain", c.Module, false)
	if err != nil {
		return err
	}

	rows := []*row{{name: "cold interpreter (baseline, --python-prewarm=false)"},
		{name: "warm interpreter, runtime.prewarm_imports declared"}, {name: "warm interpreter, imports learned from the first replica"}}
	ways := []struct {
		prewarm bool
		pkg     archive
	}{{false, plain}, {true, declared}, {true, plain}}
	mode := ""
	for i, w := range ways {
		progress("%s", rows[i].name)
		m, err := measure(ctx, c, filepath.Join(work, fmt.Sprintf("state%d", i)), w.prewarm, w.pkg, c.Module, i == 1, rows[i])
		if err != nil {
			return fmt.Errorf("%s: %w", rows[i].name, err)
		}
		mode = m
	}
	if mode == modeSpare {
		rows[2].name = "warm spare, nothing declared (replica users' replicas teach no imports)"
	}
	report(c, rows, mode, time.Since(began))
	return nil
}

// writeHeavyPackage generates generatedPackage under lib: submodules of generated functions,
// imported by its __init__, which then spends the import's CPU time.
func writeHeavyPackage(lib string, c config) error {
	dir := filepath.Join(lib, generatedPackage)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var init strings.Builder
	init.WriteString("import time\n")
	for i := 0; i < c.Submodules; i++ {
		var mod strings.Builder
		for f := 0; f < 20; f++ {
			fmt.Fprintf(&mod, "def f%d(x):\n    y = x * %d + %d\n    return [y + k for k in range(%d)]\n\n", f, i, f, f+1)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("m%03d.py", i)), []byte(mod.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&init, "from . import m%03d\n", i)
	}
	fmt.Fprintf(&init, "_t = time.process_time()\nwhile time.process_time() - _t < %g:\n    pass\n", c.ImportSeconds)
	if err := os.WriteFile(filepath.Join(dir, "__init__.py"), []byte(init.String()), 0o644); err != nil {
		return err
	}
	// Compiled as pip compiles what it installs: no start pays for it.
	if out, err := exec.Command(python.Interpreter(), "-m", "compileall", "-q", lib).CombinedOutput(); err != nil {
		return fmt.Errorf("compileall: %w: %s", err, out)
	}
	return nil
}

type archive struct{ url, sum string }

// modelPackage packs a Truss model that imports module, naming it in runtime.prewarm_imports
// when declare is set.
func modelPackage(work, name, module string, declare bool) (archive, error) {
	dir := filepath.Join(work, name)
	if err := os.MkdirAll(filepath.Join(dir, "model"), 0o755); err != nil {
		return archive{}, err
	}
	cfg := "model_name: prewarm-bench\n"
	if declare {
		cfg += "runtime: {prewarm_imports: [" + module + "]}\n"
	}
	model := "import " + module + "\n\nclass Model:\n    def predict(self, request):\n        return request\n"
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		return archive{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "model", "model.py"), []byte(model), 0o644); err != nil {
		return archive{}, err
	}
	f, err := os.Create(filepath.Join(work, name+".tar.gz"))
	if err != nil {
		return archive{}, err
	}
	defer f.Close()
	sum, err := modelpkg.Pack(dir, f)
	return archive{url: "file://" + f.Name(), sum: sum}, err
}

// node is an agent serving its API in this process.
type node struct {
	url    string
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func startNode(ctx context.Context, dir string, prewarm bool) (*node, error) {
	gpus, err := nvml.Open("none", nvml.Options{})
	if err != nil {
		return nil, err
	}
	a, err := agent.New(agent.Config{Name: "prewarm-bench", Token: token, StateDir: dir, StopGrace: 5 * time.Second,
		SuperviseInterval: 10 * time.Millisecond, StartTimeout: startTimeout, PythonPrewarm: prewarm}, gpus, agent.Runtimes{})
	if err != nil {
		gpus.Close()
		return nil, err
	}
	rt := process.New(a.ID())
	a.SetRuntimes(agent.Runtimes{Process: rt})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gpus.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	n := &node{url: "http://" + ln.Addr().String(), dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := a.Run(ctx, ln)
		a.StopAll(5 * time.Second)
		rt.Close()
		gpus.Close()
		n.done <- err
	}()
	return n, nil
}

func (n *node) close() error {
	n.cancel()
	if err := <-n.done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (n *node) call(ctx context.Context, method, path string, body any, out any) error {
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s %s: %d %v", method, path, resp.StatusCode, e)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// start starts one replica and answers how long it took to be READY, and whether it was
// forked.
func (n *node) start(ctx context.Context, pkg archive) (time.Duration, bool, error) {
	id := "r" + modelplane.NewID(11)
	began := time.Now()
	err := n.call(ctx, http.MethodPost, "/v1/replicas", agentproto.StartRequest{ReplicaID: id, DeploymentID: "dep00001",
		Environment: "production", ArchiveURL: pkg.url, ArchiveSHA256: pkg.sum}, nil)
	if err != nil {
		return 0, false, err
	}
	var r agentproto.Replica
	for {
		if err := n.call(ctx, http.MethodGet, "/v1/replicas/"+id, nil, &r); err != nil {
			return 0, false, err
		}
		if r.State == modelplane.ReplicaReady {
			break
		}
		if r.State == modelplane.ReplicaFailed || time.Since(began) > startTimeout {
			return 0, false, fmt.Errorf("replica %s is %s: %s", id, r.State, r.Error)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(began)
	forked, err := n.forked(id)
	if err != nil {
		return 0, false, err
	}
	return took, forked, n.call(ctx, http.MethodDelete, "/v1/replicas/"+id, nil, nil)
}

// forked reads from the agent's state file whether the replica's process started from a warm
// interpreter: the agent's API does not tell.
func (n *node) forked(id string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(n.dir, "state.json"))
	if err != nil {
		return false, err
	}
	var st struct {
		Replicas []struct {
			ID     string          `json:"id"`
			Handle *runtime.Handle `json:"handle"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return false, err
	}
	for _, r := range st.Replicas {
		if r.ID == id && r.Handle != nil {
			return r.Handle.Forked, nil
		}
	}
	return false, fmt.Errorf("replica %s has no handle in the state file", id)
}

// waitSpares waits, up to startTimeout, until count spares have said they were ready in the
// agent's warm interpreter logs.
func (n *node) waitSpares(ctx context.Context, count int) {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		logs, _ := filepath.Glob(filepath.Join(n.dir, "prewarm", "*", process.ForkServerLog))
		ready := 0
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, "forkserver: spare ") && strings.HasSuffix(line, " ready") {
					ready++
				}
			}
		}
		if ready >= count {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// mode is how the agent starts replicas from a warm interpreter: modeForkServer or
// modeSpare.
func (n *node) mode(ctx context.Context) (string, error) {
	var inv agentproto.InventoryResponse
	if err := n.call(ctx, http.MethodGet, "/v1/inventory", nil, &inv); err != nil {
		return "", err
	}
	if inv.Isolation.Mode == agentproto.IsolationReplicaUsers {
		return modeSpare, nil
	}
	return modeForkServer, nil
}

// waitWarm waits until a warm interpreter under the agent's directory has imported module
// (any, when module is empty) and waits for a replica: a fork server that listens, or a
// spare that is ready.
func (n *node) waitWarm(ctx context.Context, module string) error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		logs, _ := filepath.Glob(filepath.Join(n.dir, "prewarm", "*", process.ForkServerLog))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			s := string(b)
			at := strings.LastIndex(s, "imported ")
			ready := strings.Contains(s[at+1:], "ready on") || strings.Contains(s[at+1:], "spare") && strings.Contains(s[at+1:], " ready")
			if at >= 0 && strings.Contains(s[at:], module) && ready {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.New("no warm interpreter imported " + module)
}

// measure times c.Samples starts of pkg on a new agent; declared says pkg names module in
// runtime.prewarm_imports. It answers the agent's mode.
func measure(ctx context.Context, c config, dir string, prewarm bool, pkg archive, module string, declared bool, r *row) (string, error) {
	n, err := startNode(ctx, dir, prewarm)
	if err != nil {
		return "", err
	}
	mode, err := n.mode(ctx)
	if err != nil {
		n.close()
		return "", err
	}
	if prewarm {
		// The warm-up: the warm interpreter starts with the first replica, which teaches it
		// the package's imports when they are not declared (not a replica user's).
		if _, _, err := n.start(ctx, pkg); err != nil {
			n.close()
			return "", err
		}
		if mode == modeSpare && !declared {
			module = ""
		}
		if err := n.waitWarm(ctx, module); err != nil {
			n.close()
			return "", err
		}
	}
	warm := 0
	for i := 0; i < c.Samples; i++ {
		if prewarm && mode == modeSpare {
			// One spare per environment: the one the last start took is being replaced.
			n.waitSpares(ctx, warm+1)
		}
		took, forked, err := n.start(ctx, pkg)
		if err != nil {
			n.close()
			return "", err
		}
		progress("  start %d: %s (forked: %v)", i+1, took.Round(time.Millisecond), forked)
		r.starts = append(r.starts, took)
		if forked {
			r.forked++
			warm++
		}
	}
	return mode, n.close()
}

func report(c config, rows []*row, mode string, took time.Duration) {
	p50 := func(v []time.Duration) time.Duration { return benchenv.Percentile(v, 50) }
	base := p50(rows[0].starts)
	fmt.Println("## Pre-warmed Python runtime")
	fmt.Println()
	benchenv.PrintRun(took)
	if c.Module == generatedPackage {
		fmt.Printf("A Truss model that imports a generated package of %d submodules whose import spends %gs of CPU,\n", c.Submodules, c.ImportSeconds)
	} else {
		fmt.Printf("A Truss model that imports %s,\n", c.Module)
	}
	fmt.Printf("started by a node agent with the process runtime; each start is timed from POST /v1/replicas\n")
	fmt.Printf("until the replica is READY (its first successful health check), the replica deleted after.\n")
	fmt.Printf("Baseline: the same starts from a cold interpreter, in the same run. A pre-warmed row's first\n")
	fmt.Printf("start, while its warm interpreter imports, is a warm-up and not counted.\n")
	fmt.Printf("Warm interpreter: %s.\n", mode)
	if mode == modeSpare {
		fmt.Printf("A spare serves one start: each start waits until the next spare is ready.\n")
	}
	fmt.Println()
	fmt.Println("| start | starts | warm | p50 | max | p50 ÷ cold p50 |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %d | %d | %s | %s | %.3fx |\n", r.name, len(r.starts), r.forked, ms(p50(r.starts)),
			ms(benchenv.Percentile(r.starts, 100)), float64(p50(r.starts))/float64(base))
	}
	fmt.Println()
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
