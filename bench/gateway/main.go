// Command gateway measures the inference gateway against nginx, the reverse proxy it has to
// keep up with. In one run it drives the test model (cmd/testmodel) directly, behind nginx
// (proxy_pass to a keep-alive upstream) and behind `modelplane gateway`, each as a process of
// its own, with the same load generator:
//
//   - peak: a closed loop of concurrent clients, for throughput, p50 and p99;
//   - half peak: an open loop at half of the nginx row's peak rate (a rate both proxies
//     sustain), the same rate for every target, for the latency each proxy adds when it is
//     not saturated.
//
// Goals: gateway throughput at least 1.0x nginx's, and at most 1 ms of p99 added over direct
// at half of nginx's peak. It prints a markdown section, which bench/run adds to RESULTS.md,
// that says of each goal the figure, the target and whether it was met.
//
// The shadow row (needs the gateway row) is a second gateway whose
// production copies every request to a second test model process (shadow_settings at 100
// percent): against the gateway row, at half of the gateway row's peak, it measures what the
// shadow copy costs the caller's p99.
//
// With -profile FILE it also writes a CPU profile of the gateway process, taken over the
// measured time of its first peak run (`go tool pprof FILE` reads it).
//
// It needs nginx on PATH (bench/run installs Debian's nginx-light) and PostgreSQL as the
// tests use it (internal/pgtest).
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

//go:embed nginx.conf.tmpl
var nginxConfTemplate string

// Goals of the gateway: its peak throughput relative to nginx's, and the p99 it may add over
// the direct row at half of nginx's peak.
const (
	minThroughputRatio = 1.0
	maxAddedP99        = time.Millisecond
)

// startTimeout is how long a server may take to answer its readiness check.
const startTimeout = 30 * time.Second

// The rows, in the order they are printed.
const (
	rowDirect  = "direct"
	rowNginx   = "nginx"
	rowGateway = "gateway"
	rowDev     = "dev"
	rowShadow  = "shadow"
)

// maxDevShortfall is how far the dev stack's gateway may fall behind the standalone one: its
// peak throughput at least 0.9x, its p99 added over direct at most 1.1x.
const maxDevShortfall = 0.10

type config struct {
	Concurrency   int
	Duration      time.Duration
	Warmup        time.Duration
	Rounds        int
	Rate          float64
	Senders       int
	ResponseBytes int
	Targets       []string
	// Profile is where the gateway's CPU profile goes; empty: none is taken.
	Profile string
}

func main() {
	var c config
	flag.IntVar(&c.Concurrency, "concurrency", 32, "concurrent clients of the closed loop (peak)")
	flag.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time of each run")
	flag.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unmeasured time before each run's measured time")
	flag.IntVar(&c.Rounds, "rounds", 3, "rounds; each drives every target once per phase, and the median is reported")
	flag.Float64Var(&c.Rate, "rate", 0, "requests per second of the open loop; 0: half of the nginx row's peak (of direct's without nginx)")
	flag.IntVar(&c.Senders, "senders", 256, "goroutines that send the open loop's requests")
	flag.IntVar(&c.ResponseBytes, "response-bytes", 64, `length of the "pad" field of the test model's answers`)
	targets := flag.String("targets", "direct,nginx,gateway,dev,shadow",
		"rows to measure, comma-separated (direct, nginx, gateway, dev, shadow); direct is needed, the others may be left out while developing; shadow needs gateway")
	flag.StringVar(&c.Profile, "profile", "", "write a CPU profile of the gateway over its first peak run to this file (the dev stack's to FILE-dev.prof)")
	serveDevStack := flag.Bool("serve-dev-stack", false, "run as the dev row's server (the benchmark starts itself so)")
	flag.Parse()
	if *serveDevStack {
		runDevStack(c.ResponseBytes)
		return
	}
	c.Targets = strings.Split(*targets, ",")
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	// Read before stop, which cancels ctx too.
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		if interrupted {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		os.Exit(1)
	}
}

func (c config) validate() error {
	for _, t := range c.Targets {
		if t != rowDirect && t != rowNginx && t != rowGateway && t != rowDev && t != rowShadow {
			return fmt.Errorf("unknown target %q (direct, nginx, gateway, dev, shadow)", t)
		}
	}
	switch {
	case !slices.Contains(c.Targets, rowDirect):
		return errors.New("-targets must include direct: it is the baseline the added p99 is measured from")
	case slices.Contains(c.Targets, rowShadow) && !slices.Contains(c.Targets, rowGateway):
		return errors.New("-targets shadow needs gateway: the shadow copy's cost is measured against it")
	case c.Profile != "" && !slices.Contains(c.Targets, rowGateway):
		return errors.New("-profile needs the gateway among -targets")
	case c.Concurrency < 1 || c.Senders < 1 || c.Rounds < 1:
		return errors.New("-concurrency, -senders and -rounds must be at least 1")
	case c.Duration <= 0 || c.Warmup < 0:
		return errors.New("-duration must be positive and -warmup not negative")
	case c.Rate < 0:
		return errors.New("-rate must not be negative")
	}
	return nil
}

func (c config) has(row string) bool { return slices.Contains(c.Targets, row) }

func run(ctx context.Context, c config) error {
	nginxVersion := "not run"
	if c.has(rowNginx) {
		if _, err := exec.LookPath("nginx"); err != nil {
			return errors.New("nginx is not on PATH; bench/run installs Debian's nginx-light, or: apt-get install nginx-light")
		}
		out, err := exec.Command("nginx", "-v").CombinedOutput()
		if err != nil {
			return fmt.Errorf("nginx -v: %w: %s", err, out)
		}
		nginxVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
	}

	dir, err := os.MkdirTemp("", "modelplane-bench-gateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// nginx's workers run as nobody when it is started as root, and write their temp files here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	pkgs := []string{"github.com/modelplane/modelplane/cmd/testmodel"}
	if c.has(rowGateway) || c.has(rowShadow) {
		pkgs = append(pkgs, "github.com/modelplane/modelplane/cmd/modelplane")
	}
	progress("building %s", strings.Join(pkgs, " "))
	build := exec.CommandContext(ctx, "go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}

	modelPort, err := freePort()
	if err != nil {
		return err
	}
	model, err := startProcess(dir, "testmodel", true, dir+"/testmodel", "--port", strconv.Itoa(modelPort),
		"--latency", "0", "--response-bytes", strconv.Itoa(c.ResponseBytes))
	if err != nil {
		return err
	}
	defer model.stop()
	modelAddr := fmt.Sprintf("127.0.0.1:%d", modelPort)
	if err := model.waitReady(ctx, startTimeout, httpGetOK("http://"+modelAddr+"/health")); err != nil {
		return err
	}
	conns := max(c.Concurrency, c.Senders)
	targets := []*target{{name: rowDirect, url: "http://" + modelAddr + "/predict", procs: []*process{model}}}

	if c.has(rowNginx) {
		t, stop, err := startNginx(ctx, dir, modelPort, model)
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, t)
	}
	if c.has(rowGateway) {
		t, stop, err := startGateway(ctx, dir, modelAddr, model, c.Profile != "")
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, t)
	}
	var shadowModel *process
	var shadowModelAddr string
	if c.has(rowShadow) {
		// A model of its own for the copies, so that they do not load the primary's.
		port, err := freePort()
		if err != nil {
			return err
		}
		shadowModelAddr = fmt.Sprintf("127.0.0.1:%d", port)
		if shadowModel, err = startProcess(dir, "shadow-testmodel", true, dir+"/testmodel", "--port", strconv.Itoa(port),
			"--latency", "0", "--response-bytes", strconv.Itoa(c.ResponseBytes)); err != nil {
			return err
		}
		defer shadowModel.stop()
		if err := shadowModel.waitReady(ctx, startTimeout, httpGetOK("http://"+shadowModelAddr+"/health")); err != nil {
			return err
		}
		t, stop, err := startGatewayRow(ctx, rowShadow, dir, modelAddr, shadowModelAddr, model, false)
		if err != nil {
			return err
		}
		defer stop()
		t.procs = append(t.procs, shadowModel)
		targets = append(targets, t)
	}
	if c.has(rowDev) {
		progress("starting the dev stack and deploying the test model through it")
		t, stop, err := startDevStack(ctx, dir, c.ResponseBytes)
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, t)
	}
	for _, t := range targets {
		if t.client != nil {
			t.client.CloseIdleConnections() // the readiness probe's
		}
		t.client = newClient(conns)
		// Every target answers once before any is measured, so a broken one fails the run
		// here, with its log, rather than as a row of errors.
		if err := t.predict(ctx); err != nil {
			return fmt.Errorf("probe of %s: %w%s", t.name, err, tails(t.procs))
		}
	}

	peak := make(map[string][]sample)
	for r := range c.Rounds {
		for _, t := range rotate(targets, r) {
			progress("round %d/%d, peak: %s", r+1, c.Rounds, t.name)
			var profiled chan error
			if c.Profile != "" && r == 0 && t.pprofAddr != "" {
				profiled = make(chan error, 1)
				path := c.Profile
				if t.name == rowDev {
					path = strings.TrimSuffix(path, ".prof") + "-dev.prof"
				}
				go func() { profiled <- profile(ctx, t.pprofAddr, c.Warmup, c.Duration, path) }()
			}
			s := closedLoop(ctx, t, c.Concurrency, c.Warmup, c.Duration)
			if err := afterRun(ctx, t, s); err != nil {
				return err
			}
			if profiled != nil {
				if err := <-profiled; err != nil {
					return fmt.Errorf("profile of %s: %w", t.name, err)
				}
				progress("wrote %s's CPU profile", t.name)
			}
			peak[t.name] = append(peak[t.name], s)
		}
	}
	rate := c.Rate
	if rate == 0 {
		// Half of nginx's peak: a rate every proxy that keeps up with nginx sustains, so the
		// open loop measures added latency rather than a queue building up.
		base := rowNginx
		if !c.has(rowNginx) {
			base = rowDirect
		}
		rate = median(peak[base], func(s sample) float64 { return s.rps }) / 2
	}
	half := make(map[string][]sample)
	for r := range c.Rounds {
		for _, t := range rotate(targets, r) {
			progress("round %d/%d, %.0f req/s: %s", r+1, c.Rounds, rate, t.name)
			s := openLoop(ctx, t, rate, c.Senders, c.Warmup, c.Duration)
			if err := afterRun(ctx, t, s); err != nil {
				return err
			}
			half[t.name] = append(half[t.name], s)
		}
	}

	var shadow *shadowCost
	if c.has(rowShadow) {
		if shadow, err = measureShadow(ctx, c, targets, peak, shadowModelAddr); err != nil {
			return err
		}
	}

	report(c, nginxVersion, rate, targets, peak, half)
	if shadow != nil {
		shadow.report()
	}
	return nil
}

// shadowCost is the open loop of the gateway row and the shadow row at half of the gateway
// row's peak, and how many copies reached the shadow's model.
type shadowCost struct {
	rate          float64
	without, with []sample
	copies        int64
}

// measureShadow runs the gateway and shadow rows' open loops at half of the gateway row's
// peak, in rotating order, each round.
func measureShadow(ctx context.Context, c config, targets []*target, peak map[string][]sample, shadowModelAddr string) (*shadowCost, error) {
	var pair []*target
	for _, t := range targets {
		if t.name == rowGateway || t.name == rowShadow {
			pair = append(pair, t)
		}
	}
	sc := &shadowCost{rate: median(peak[rowGateway], func(s sample) float64 { return s.rps }) / 2}
	for r := range c.Rounds {
		for _, t := range rotate(pair, r) {
			progress("round %d/%d, %.0f req/s (half of the gateway's peak): %s", r+1, c.Rounds, sc.rate, t.name)
			s := openLoop(ctx, t, sc.rate, c.Senders, c.Warmup, c.Duration)
			if err := afterRun(ctx, t, s); err != nil {
				return nil, err
			}
			if t.name == rowShadow {
				sc.with = append(sc.with, s)
			} else {
				sc.without = append(sc.without, s)
			}
		}
	}
	var err error
	sc.copies, err = modelRequests(ctx, shadowModelAddr)
	return sc, err
}

// modelRequests reads how many predictions a test model answered.
func modelRequests(ctx context.Context, addr string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/stats", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var stats struct {
		Requests int64 `json:"requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		return 0, fmt.Errorf("GET http://%s/stats: %w", addr, err)
	}
	return stats.Requests, nil
}

func (sc *shadowCost) report() {
	p99 := func(ss []sample) time.Duration {
		return medianDuration(ss, func(s sample) time.Duration { return s.p99 })
	}
	p50 := func(ss []sample) time.Duration {
		return medianDuration(ss, func(s sample) time.Duration { return s.p50 })
	}
	fmt.Printf("Shadow traffic: the shadow row is a second gateway whose production copies every request (100 percent, "+
		"compare json) to a second test model process once the caller is answered. At %.0f req/s (half of the "+
		"gateway row's peak), open loop as above:\n\n", sc.rate)
	fmt.Printf("- without a shadow: p50 %s, p99 %s, %d errors;\n", micro(p50(sc.without)), micro(p99(sc.without)),
		sum(sc.without, func(s sample) int { return s.errors }))
	fmt.Printf("- with the shadow at 100 percent: p50 %s, p99 %s, %d errors;\n", micro(p50(sc.with)), micro(p99(sc.with)),
		sum(sc.with, func(s sample) int { return s.errors }))
	fmt.Printf("- the shadow copy's cost to the caller's p99: %+.3f ms; the shadow's model answered %d copies over "+
		"the whole run (both phases, warm-ups included).\n\n", ms(p99(sc.with)-p99(sc.without)), sc.copies)
}

// startNginx writes nginx's configuration from the template and starts it in front of the
// test model. The returned function stops it.
func startNginx(ctx context.Context, dir string, modelPort int, model *process) (*target, func(), error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	prefix := dir + "/nginx"
	if err := os.Mkdir(prefix, 0o755); err != nil {
		return nil, nil, err
	}
	var conf bytes.Buffer
	err = template.Must(template.New("nginx").Parse(nginxConfTemplate)).Execute(&conf, map[string]any{
		"User": nginxUser(), "Prefix": prefix, "Port": port, "UpstreamPort": modelPort,
	})
	if err != nil {
		return nil, nil, err
	}
	confPath := prefix + "/nginx.conf"
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		return nil, nil, err
	}
	p, err := startProcess(dir, "nginx", false, "nginx", "-c", confPath, "-p", prefix,
		"-e", prefix+"/error.log", "-g", "daemon off;")
	if err != nil {
		return nil, nil, err
	}
	t := &target{name: rowNginx, url: fmt.Sprintf("http://127.0.0.1:%d/predict", port),
		procs: []*process{p, model}, client: newClient(1)}
	// nginx has no readiness endpoint of its own; a prediction through it is the check.
	if err := p.waitReady(ctx, startTimeout, t.predict); err != nil {
		p.stop()
		return nil, nil, fmt.Errorf("%w%s", err, tails([]*process{{name: "nginx error log", log: prefix + "/error.log"}}))
	}
	return t, p.stop, nil
}

// nginxUser is the user nginx's workers run as when it is started as root: nobody, with
// nobody's group, since nginx's default group "nobody" does not exist on Debian. Started by
// anyone else, nginx runs as that user and takes no user directive.
func nginxUser() string {
	if os.Geteuid() != 0 {
		return ""
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return ""
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return ""
	}
	return "nobody " + g.Name
}

// startGateway makes a fresh database routing the production environment of one model to
// the test model, and starts `modelplane gateway` on it. The returned function stops the
// gateway and drops the database.
func startGateway(ctx context.Context, dir, modelAddr string, model *process, pprof bool) (*target, func(), error) {
	return startGatewayRow(ctx, rowGateway, dir, modelAddr, "", model, pprof)
}

// startGatewayRow is startGateway for the row name; with shadowAddr, production copies every
// request to a second deployment whose replica is there.
func startGatewayRow(ctx context.Context, name, dir, modelAddr, shadowAddr string, model *process, pprof bool) (*target, func(), error) {
	dbURL, drop, err := pgtest.Create("benchgw")
	if err != nil {
		return nil, nil, err
	}
	modelID, key, err := seed(ctx, dbURL, modelAddr, shadowAddr)
	if err != nil {
		drop()
		return nil, nil, fmt.Errorf("seed the gateway's database: %w", err)
	}
	port, err := freePort()
	if err != nil {
		drop()
		return nil, nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Warnings only: nginx runs without an access log too.
	args := []string{"gateway", "--listen", addr, "--database-url", dbURL, "--log-level", "warn"}
	var pprofAddr string
	if pprof {
		pport, err := freePort()
		if err != nil {
			drop()
			return nil, nil, err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", pport)
		args = append(args, "--pprof-addr", pprofAddr)
	}
	p, err := startProcess(dir, name, false, dir+"/modelplane", args...)
	if err != nil {
		drop()
		return nil, nil, err
	}
	stop := func() { p.stop(); drop() }
	if err := p.waitReady(ctx, startTimeout, httpGetOK("http://"+addr+"/readyz")); err != nil {
		stop()
		return nil, nil, err
	}
	return &target{name: name, url: "http://" + addr + "/models/" + modelID + "/production/predict",
		apiKey: key, procs: []*process{p, model}, pprofAddr: pprofAddr}, stop, nil
}

// profile waits out warmup, then takes a CPU profile of d from the pprof server at addr and
// writes it to path.
func profile(ctx context.Context, addr string, warmup, d time.Duration, path string) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(warmup):
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s answered %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// seed creates what the gateway routes by: a workspace and its API key, a model whose
// production environment points at an ACTIVE deployment, and one READY replica of it at
// modelAddr. With shadowAddr, production copies every request to a second ACTIVE deployment
// with a READY replica there.
func seed(ctx context.Context, dbURL, modelAddr, shadowAddr string) (modelID, key string, err error) {
	if err := pgtest.Migrate(dbURL); err != nil {
		return "", "", err
	}
	db, err := store.Open(ctx, dbURL)
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	ws, _, err := store.EnsureWorkspace(ctx, db, "bench")
	if err != nil {
		return "", "", err
	}
	_, key, err = apikey.Create(ctx, db, ws.ID, "bench", false)
	if err != nil {
		return "", "", err
	}
	m, err := store.CreateModel(ctx, db, ws.ID, "bench")
	if err != nil {
		return "", "", err
	}
	d, err := servingDeployment(ctx, db, m, modelAddr)
	if err != nil {
		return "", "", err
	}
	if err := store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, d); err != nil {
		return "", "", err
	}
	if shadowAddr != "" {
		s, err := servingDeployment(ctx, db, m, shadowAddr)
		if err != nil {
			return "", "", err
		}
		shadow := settings.DefaultShadowSettings()
		shadow.DeploymentID = &s
		if err := store.UpdateEnvironmentShadow(ctx, db, m.ID, modelplane.ProductionEnvironment, shadow); err != nil {
			return "", "", err
		}
	}
	return m.ID, key, nil
}

// servingDeployment makes an ACTIVE deployment of the model with one READY replica at addr.
func servingDeployment(ctx context.Context, db *sqlx.DB, m store.Model, addr string) (string, error) {
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	if err != nil {
		return "", err
	}
	if err := store.SetDeploymentStatus(ctx, db, d.ID, modelplane.DeploymentActive, ""); err != nil {
		return "", err
	}
	r, _, err := store.CreateReplica(ctx, db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: d.ID})
	if err != nil {
		return "", err
	}
	return d.ID, store.SetReplicaState(ctx, db, r.ID, modelplane.ReplicaReady, addr, "")
}

// httpGetOK is a readiness probe: GET url answers 200.
func httpGetOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s answered %d", url, resp.StatusCode)
		}
		return nil
	}
}

// afterRun fails the benchmark if a server died during the run, and reports errors.
func afterRun(ctx context.Context, t *target, s sample) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, p := range t.procs {
		if err := p.check(); err != nil {
			return fmt.Errorf("while measuring %s: %w", t.name, err)
		}
	}
	if s.errors > 0 {
		progress("%s: %d errors, the first: %v", t.name, s.errors, s.firstErr)
	}
	return nil
}

// tails is the end of each process's output, for an error message.
func tails(procs []*process) string {
	var b strings.Builder
	for _, p := range procs {
		if t := p.tail(2048); t != "" {
			fmt.Fprintf(&b, "\n--- last lines of %s (%s) ---\n%s", p.name, p.log, t)
		}
	}
	return b.String()
}

// rotate returns the targets starting with the r-th, so that no target always runs first or
// right after the same other one.
func rotate(ts []*target, r int) []*target {
	k := r % len(ts)
	return append(slices.Clone(ts[k:]), ts[:k]...)
}

// median is the median of f over the samples; of an even number, the lower middle one.
func median(ss []sample, f func(sample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	return v[(len(v)-1)/2]
}

func medianDuration(ss []sample, f func(sample) time.Duration) time.Duration {
	return time.Duration(median(ss, func(s sample) float64 { return float64(f(s)) }))
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/gateway: "+format+"\n", args...)
}

func report(c config, nginxVersion string, rate float64, targets []*target, peak, half map[string][]sample) {
	host, _ := os.Hostname()
	fmt.Printf("## Inference gateway against nginx\n\n")
	fmt.Printf("Run %s on %s (%d CPUs, %s/%s, %s, %s).\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), nginxVersion)
	fmt.Printf("The test model (cmd/testmodel: no latency, %d-byte pad) is driven directly, behind nginx "+
		"(`proxy_pass` to a keep-alive upstream, worker_processes auto, no access log) and behind "+
		"`modelplane gateway` (routing table from PostgreSQL on loopback, warnings-only log), each its own "+
		"process, by the same load generator: HTTP/1.1 keep-alive clients POSTing a %d-byte JSON body. The dev "+
		"row is the gateway of the whole dev stack in one process of its own, as `modelplane dev` runs it "+
		"(embedded Temporal, the API and the gateway on one address, the worker, the autoscaler and the node "+
		"agent, warnings-only log), in front of the same test model deployed through the stack's API as a "+
		"`process` package (one replica, started by the stack's agent, with no log line per request, as the "+
		"other rows' model's output is not read either) and predicted on by its deployment's ID.\n\n",
		c.ResponseBytes, len(requestBody))
	fmt.Printf("- Peak: closed loop, %d concurrent clients, %s measured after %s of warm-up.\n",
		c.Concurrency, c.Duration, c.Warmup)
	how := "half of nginx's peak, a rate both proxies sustain"
	switch {
	case c.Rate > 0:
		how = "set by -rate"
	case !c.has(rowNginx):
		how = "half of direct's peak, nginx being left out"
	}
	fmt.Printf("- Half peak: open loop at %.0f req/s (%s) for every target, %s measured after %s of warm-up; "+
		"requests leave on a fixed schedule, sent by up to %d goroutines, and are timed from their "+
		"scheduled time (from the scheduler's wake-up when its timer fired late), so slow answers "+
		"do not slow the sending (no coordinated omission).\n", rate, how, c.Duration, c.Warmup, c.Senders)
	rounds := fmt.Sprintf("%d rounds", c.Rounds)
	if c.Rounds == 1 {
		rounds = "1 round"
	}
	fmt.Printf("- %s, each driving every target once per phase in rotating order; every figure is the "+
		"median over the rounds, errors are totals. The load generator, the proxy and the test model share "+
		"this machine's %d CPUs, so a proxy's CPU is taken from the other two: the figures compare the "+
		"proxies with each other here, not with a deployment that gives the proxy machines of its own.\n\n",
		rounds, runtime.NumCPU())

	fmt.Printf("| target | requests | errors | req/s | p50 | p99 | p50 at %.0f req/s | p99 at %.0f req/s | errors at %.0f req/s |\n",
		rate, rate, rate)
	fmt.Printf("|---|---|---|---|---|---|---|---|---|\n")
	rps := map[string]float64{}
	p99Half := map[string]time.Duration{}
	for _, t := range targets {
		p, h := peak[t.name], half[t.name]
		rps[t.name] = median(p, func(s sample) float64 { return s.rps })
		p99Half[t.name] = medianDuration(h, func(s sample) time.Duration { return s.p99 })
		fmt.Printf("| %s | %.0f | %d | %.0f | %s | %s | %s | %s | %d |\n", t.name,
			median(p, func(s sample) float64 { return float64(s.requests) }), sum(p, func(s sample) int { return s.errors }),
			rps[t.name],
			micro(medianDuration(p, func(s sample) time.Duration { return s.p50 })),
			micro(medianDuration(p, func(s sample) time.Duration { return s.p99 })),
			micro(medianDuration(h, func(s sample) time.Duration { return s.p50 })),
			micro(p99Half[t.name]), sum(h, func(s sample) int { return s.errors }))
	}
	fmt.Println()

	fmt.Printf("By round (req/s at peak; p99 at %.0f req/s):\n\n", rate)
	for _, t := range targets {
		var a, b []string
		for i := range peak[t.name] {
			a = append(a, fmt.Sprintf("%.0f", peak[t.name][i].rps))
			b = append(b, micro(half[t.name][i].p99).String())
		}
		fmt.Printf("- %s: %s; %s\n", t.name, strings.Join(a, ", "), strings.Join(b, ", "))
	}
	fmt.Println()

	fmt.Printf("Goals of the gateway:\n\n")
	if !c.has(rowGateway) {
		fmt.Printf("- None measured: the gateway was left out (-targets %s).\n", strings.Join(c.Targets, ","))
	}
	if c.has(rowGateway) && c.has(rowNginx) {
		ratio := rps[rowGateway] / rps[rowNginx]
		fmt.Printf("- Peak throughput, gateway / nginx: %.2fx; target at least %.1fx: %s.\n",
			ratio, minThroughputRatio, met(ratio >= minThroughputRatio))
	} else if c.has(rowGateway) {
		fmt.Printf("- Peak throughput, gateway / nginx: not measured (nginx left out); target at least %.1fx.\n",
			minThroughputRatio)
	}
	if c.has(rowGateway) {
		added := p99Half[rowGateway] - p99Half[rowDirect]
		fmt.Printf("- p99 added over direct at %.0f req/s (%s): %+.3f ms; target at most %.0f ms: %s.\n",
			rate, how, ms(added), ms(maxAddedP99), met(added <= maxAddedP99))
	}
	if c.has(rowNginx) {
		fmt.Printf("- For comparison, nginx's p99 added over direct at %.0f req/s: %+.3f ms.\n",
			rate, ms(p99Half[rowNginx]-p99Half[rowDirect]))
	}
	if c.has(rowDev) && c.has(rowGateway) {
		ratio := rps[rowDev] / rps[rowGateway]
		fmt.Printf("- Peak throughput, the dev stack's gateway / the standalone gateway: %.2fx; target at least %.1fx: %s.\n",
			ratio, 1-maxDevShortfall, met(ratio >= 1-maxDevShortfall))
		gwAdded, devAdded := p99Half[rowGateway]-p99Half[rowDirect], p99Half[rowDev]-p99Half[rowDirect]
		limit := time.Duration(float64(gwAdded) * (1 + maxDevShortfall))
		fmt.Printf("- p99 added over direct at %.0f req/s, the dev stack's gateway: %+.3f ms against the standalone "+
			"gateway's %+.3f ms; target at most %.1fx of it (%+.3f ms): %s.\n",
			rate, ms(devAdded), ms(gwAdded), 1+maxDevShortfall, ms(limit), met(devAdded <= limit))
	}
	fmt.Println()
}

func sum(ss []sample, f func(sample) int) int {
	n := 0
	for _, s := range ss {
		n += f(s)
	}
	return n
}

// micro rounds a latency for the table: to the microsecond, or the millisecond from a second.
func micro(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
