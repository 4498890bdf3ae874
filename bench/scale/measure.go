package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/autoscaler"
	"github.com/modelplane/modelplane/bench/internal/benchgw"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/store"
)

// measure takes one size's figures; asyncCount > 0 queues that many async requests too.
func measure(ctx context.Context, cfg config, n, asyncCount int) (figures, error) {
	f := figures{models: n, deployments: 3 * n}
	upstream, stopUpstream, err := modelServer()
	if err != nil {
		return f, err
	}
	defer stopUpstream()
	progress("%d models: filling a database", n)
	fl, err := newFleet(ctx, n, cfg.active, upstream)
	if err != nil {
		return f, err
	}
	defer fl.close()

	progress("%d models: idle CPU over %s", n, cfg.idle)
	if f.gatewayCPU, f.gatewayPG, err = idleCPU(fl.db, fl.url, cfg.idle, "gateway"); err != nil {
		return f, err
	}
	if f.autoscalerCPU, f.autoscalerPG, err = idleCPU(fl.db, fl.url, cfg.idle, "autoscaler"); err != nil {
		return f, err
	}

	gw, stop, err := benchgw.Start(ctx, gateway.Options{DB: fl.db, DatabaseURL: fl.url, AsyncRateLimit: -1, MaxOpenAsync: 10_000_000})
	if err != nil {
		return f, err
	}
	defer stop()
	h := gw.Handler(nil)

	progress("%d models: routing reload", n)
	if f.loadRoutes, err = median(20, func() error { _, err := store.LoadRoutes(ctx, fl.db); return err }); err != nil {
		return f, err
	}
	if f.reloadSeen, err = reloadSeen(ctx, fl, h, cfg.active, upstream); err != nil {
		return f, err
	}

	progress("%d models: autoscaler tick", n)
	if f.tick, err = tickTime(ctx, fl); err != nil {
		return f, err
	}

	progress("%d models: GET /v1/models", n)
	if f.listP50, f.listP99, f.listBytes, err = listModels(fl, cfg.listRequests, n); err != nil {
		return f, err
	}

	if asyncCount > 0 {
		progress("%d models: %d async requests", n, asyncCount)
		// The last model's production deployment is at zero and stays there: nothing starts.
		if f.async, err = queueAsync(ctx, fl, gw, h, fl.models[len(fl.models)-1], asyncCount, cfg.asyncClients); err != nil {
			return f, err
		}
	}
	return f, nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
}

// median runs fn k times and returns its median duration.
func median(k int, fn func() error) (time.Duration, error) {
	ds := make([]time.Duration, 0, k)
	for range k {
		start := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// idleCPU runs the component as a child process on the database, waits until it says it is
// up and a settle period, and returns the CPU it used, and the PostgreSQL backends of the
// database used, per second of wall time over d.
func idleCPU(db *sqlx.DB, dbURL string, d time.Duration, component string) (proc, backends float64, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(self, "-child", component, "-database-url", dbURL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		return 0, 0, fmt.Errorf("%s did not come up: %q %v", component, line, err)
	}
	time.Sleep(3 * time.Second)
	pids := func() ([]int, error) {
		var ps []int
		err := db.Select(&ps, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
		return ps, err
	}
	before := map[int]time.Duration{}
	ps, err := pids()
	if err != nil {
		return 0, 0, err
	}
	for _, p := range append(ps, cmd.Process.Pid) {
		before[p], _ = cpuTime(p) // a backend that ended meanwhile counts from zero
	}
	start := time.Now()
	time.Sleep(d)
	wall := time.Since(start)
	if ps, err = pids(); err != nil {
		return 0, 0, err
	}
	var pg time.Duration
	for _, p := range ps {
		if t, err := cpuTime(p); err == nil {
			pg += t - before[p]
		}
	}
	self2, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	return float64(self2-before[cmd.Process.Pid]) / float64(wall), float64(pg) / float64(wall), nil
}

// cpuTime is a process's utime+stime from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("reading /proc/%d/stat: %q", pid, b)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// reloadSeen gives zero deployments a READY replica, one at a time, and returns the median
// time from the change until a predict through the gateway's handler reaches the replica.
func reloadSeen(ctx context.Context, fl *fleet, h http.Handler, active int, upstream string) (time.Duration, error) {
	predict := func(modelID string) int {
		req := httptest.NewRequest(http.MethodPost, "/models/"+modelID+"/production/predict", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Api-Key "+fl.key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	var ds []time.Duration
	for j := range 10 {
		i := active + j
		if i >= len(fl.models)-1 { // the last model is kept at zero for the async requests
			break
		}
		if code := predict(fl.models[i]); code == http.StatusOK {
			return 0, fmt.Errorf("a deployment at zero answered 200 before its change")
		}
		start := time.Now()
		if _, err := fl.db.ExecContext(ctx, `UPDATE deployments SET status = $2 WHERE id = $1`,
			fl.deployments[i][0], modelplane.DeploymentActive); err != nil {
			return 0, err
		}
		if err := insertReady(ctx, fl.db, []string{modelplane.NewID(12)}, []string{fl.deployments[i][0]}, upstream); err != nil {
			return 0, err
		}
		for predict(fl.models[i]) != http.StatusOK {
			if time.Since(start) > 30*time.Second {
				return 0, fmt.Errorf("the gateway never routed a change")
			}
			time.Sleep(time.Millisecond)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// tickTime times the autoscaler's tick (autoscaler.Loop.Tick) where it scales nothing, with
// PostgreSQL's JIT off for the database, as the loop's leader session has it.
func tickTime(ctx context.Context, fl *fleet) (time.Duration, error) {
	var name string
	if err := fl.db.GetContext(ctx, &name, `SELECT current_database()`); err != nil {
		return 0, err
	}
	if _, err := fl.db.ExecContext(ctx, `ALTER DATABASE `+pq.QuoteIdentifier(name)+` SET jit = off`); err != nil {
		return 0, err
	}
	db, err := store.Open(ctx, fl.url) // sessions that start with the setting
	if err != nil {
		return 0, err
	}
	defer db.Close()
	l := autoscaler.New(autoscaler.Options{DB: db, Temporal: noWorkflows{}, Logger: slog.New(slog.DiscardHandler)})
	return median(20, func() error { return l.Tick(ctx, time.Now()) })
}

// noWorkflows stands in for Temporal where the benchmark runs no workflows: a scale the tick
// decides on is refused at once, so its cost stays in the figure without a server to send to.
type noWorkflows struct{ client.Client }

func (noWorkflows) UpdateWorkflow(context.Context, client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	return nil, errors.New("no Temporal in this benchmark")
}

func (noWorkflows) ExecuteWorkflow(context.Context, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	return nil, errors.New("no Temporal in this benchmark")
}

// listModels serves the API on loopback and times k sequential GET /v1/models; it checks
// that the answer names every model.
func listModels(fl *fleet, k, n int) (p50, p99 time.Duration, size int, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, err
	}
	srv := &http.Server{Handler: api.New(api.Deps{DB: fl.db, Registry: prometheus.NewRegistry()})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	hc := &http.Client{}
	url := "http://" + ln.Addr().String() + "/v1/models"
	var ds []time.Duration
	for range k {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Api-Key "+fl.key)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, 0, 0, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return 0, 0, 0, fmt.Errorf("GET /v1/models: %d %v", resp.StatusCode, err)
		}
		ds = append(ds, time.Since(start))
		size = len(b)
		if len(ds) == 1 && strings.Count(string(b), `"deployments_count"`) != n {
			progress("GET /v1/models names %d models of %d (paged)", strings.Count(string(b), `"deployments_count"`), n)
		}
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[(len(ds)-1)*99/100], size, nil
}
