// Command scale measures how modelplane's control plane grows with the number of models and
// deployments, most of them at zero: the idle CPU of the gateway and of the autoscaler loop,
// the routing table's reload after one change, the autoscaler's tick, GET /v1/models, and
// the acceptance of queued async requests with what they cost in memory.
//
// Each size gets a fresh database filled directly (models through the store, deployments
// and replicas in plain SQL). The gateway and the autoscaler loop run for the idle figure as
// child processes of this command, so that each one's CPU time is its own (/proc/<pid>/stat).
// The other figures are taken in this process, the smallest size being the baseline.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type config struct {
	sizes        []int
	active       int
	idle         time.Duration
	listRequests int
	asyncCount   int
	asyncClients int
}

func main() {
	sizes := flag.String("models", "100,1000", "model counts to measure, comma-separated; each model has 3 deployments")
	active := flag.Int("active", 50, "deployments with a READY replica at every size; the others are at zero")
	idle := flag.Duration("idle", 20*time.Second, "how long the idle CPU is measured")
	list := flag.Int("list-requests", 200, "sequential GET /v1/models requests")
	async := flag.Int("async", 100000, "async requests queued at the largest size")
	asyncClients := flag.Int("async-clients", 8, "concurrent async clients")
	child := flag.String("child", "", "run one component on -database-url until killed (used by the benchmark itself)")
	dbURL := flag.String("database-url", "", "the child's database")
	flag.Parse()
	if *child != "" {
		if err := runChild(*child, *dbURL); err != nil {
			fmt.Fprintln(os.Stderr, "scale child:", err)
			os.Exit(1)
		}
		return
	}
	cfg := config{active: *active, idle: *idle, listRequests: *list, asyncCount: *async, asyncClients: *asyncClients}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < *active {
			fmt.Fprintf(os.Stderr, "scale: -models: %q is not a count of at least -active\n", s)
			os.Exit(2)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	if err := run(context.Background(), cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// figures are one size's measurements.
type figures struct {
	models, deployments int
	// CPU seconds per second of wall time, of the process and of the database's backends.
	gatewayCPU, autoscalerCPU float64
	gatewayPG, autoscalerPG   float64
	loadRoutes, reloadSeen    time.Duration
	tick                      time.Duration
	listP50, listP99          time.Duration
	listBytes                 int
	async                     *asyncFigures
}

func run(ctx context.Context, cfg config, args []string) error {
	var all []figures
	for i, n := range cfg.sizes {
		asyncCount := 0
		if i == len(cfg.sizes)-1 {
			asyncCount = cfg.asyncCount
		}
		f, err := measure(ctx, cfg, n, asyncCount)
		if err != nil {
			return fmt.Errorf("%d models: %w", n, err)
		}
		all = append(all, f)
	}
	report(cfg, args, all)
	return nil
}

func report(cfg config, args []string, all []figures) {
	host, _ := os.Hostname()
	cmd := "go run ./bench/scale"
	if len(args) > 0 {
		cmd += " " + strings.Join(args, " ")
	}
	fmt.Printf("## Control plane at scale\n\n")
	fmt.Printf("Run %s on %s (%d CPUs, %s/%s, %s): `%s`. Each model has 3 deployments; %d of them (at every size) are ACTIVE with one READY replica (min_replica 1) on a local HTTP server, all the others SCALED_TO_ZERO (min_replica 0); each model's production environment points at its first deployment. A fresh database per size, filled directly; PostgreSQL on loopback. The baseline is the smallest size; the growth exponent is log(f_large/f_small)/log(models_large/models_small): 0 is flat, 1 linear.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		runtime.Version(), cmd, cfg.active)
	fmt.Printf("- Idle CPU: the gateway (`gateway.New` + `Run`, no Temporal) and the autoscaler loop (`autoscaler.Loop`, leading, 1 s tick) each alone in a child process, no traffic, utime+stime from /proc/<pid>/stat over %s after a 3 s settle, as a share of one core; and the same for the PostgreSQL backends connected to the size's database meanwhile (the benchmark's own connections idle).\n", cfg.idle)
	fmt.Printf("- Routing reload: `store.LoadRoutes` (the read every reload does), median of 20; and one zero deployment given a READY replica (one INSERT, whose trigger sends NOTIFY modelplane_routes) until its predict through the gateway's handler answers 200 instead of 503, median of 10.\n")
	fmt.Printf("- Autoscaler tick: `autoscaler.Loop.Tick` where it scales nothing (read every target, decide, sweep the async queues), on sessions with jit off as the loop's, median of 20.\n")
	fmt.Printf("- GET /v1/models: %d sequential requests with the API key, through the API handler over HTTP on loopback.\n\n", cfg.listRequests)
	fmt.Printf("| figure |")
	for _, f := range all {
		fmt.Printf(" %d models / %d deployments |", f.models, f.deployments)
	}
	fmt.Printf(" growth exponent |\n|---|")
	for range all {
		fmt.Printf("---|")
	}
	fmt.Printf("---|\n")
	row := func(name string, get func(figures) float64, format func(float64) string) {
		fmt.Printf("| %s |", name)
		for _, f := range all {
			fmt.Printf(" %s |", format(get(f)))
		}
		first, last := all[0], all[len(all)-1]
		exp := "–"
		if len(all) > 1 && get(first) > 0 && get(last) > 0 {
			exp = fmt.Sprintf("%.2f", math.Log(get(last)/get(first))/math.Log(float64(last.models)/float64(first.models)))
		}
		fmt.Printf(" %s |\n", exp)
	}
	pct := func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }
	dur := func(v float64) string { return time.Duration(v).Round(time.Microsecond).String() }
	row("gateway idle CPU (share of a core)", func(f figures) float64 { return f.gatewayCPU }, pct)
	row("PostgreSQL backends' CPU for the idle gateway", func(f figures) float64 { return f.gatewayPG }, pct)
	row("autoscaler loop idle CPU (share of a core)", func(f figures) float64 { return f.autoscalerCPU }, pct)
	row("PostgreSQL backends' CPU for the idle autoscaler loop", func(f figures) float64 { return f.autoscalerPG }, pct)
	row("store.LoadRoutes (median)", func(f figures) float64 { return float64(f.loadRoutes) }, dur)
	row("one change until the gateway routes it (median)", func(f figures) float64 { return float64(f.reloadSeen) }, dur)
	row("autoscaler tick (median)", func(f figures) float64 { return float64(f.tick) }, dur)
	row("GET /v1/models p50", func(f figures) float64 { return float64(f.listP50) }, dur)
	row("GET /v1/models p99", func(f figures) float64 { return float64(f.listP99) }, dur)
	row("GET /v1/models body (bytes)", func(f figures) float64 { return float64(f.listBytes) }, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	fmt.Println()
	for _, f := range all {
		if f.async != nil {
			reportAsync(cfg, f)
		}
	}
}
