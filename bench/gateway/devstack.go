package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // the child's profile, on -profile
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/bench/internal/benchenv"
)

// The dev row is the gateway of the whole dev stack (devstack: embedded Temporal, the API and
// the gateway on one address, the worker, the autoscaler, the node agent with the process
// runtime), which `modelplane dev` runs, in a process of its own: this program started again
// with -serve-dev-stack. The test model is deployed through the stack's API as a `process`
// package with the same arguments as the other rows' model, one replica, which the stack's
// agent starts. It writes no line per request (--quiet), as the other rows' model's output is
// not read either: the agent would otherwise collect a log line per request.
const (
	// devStackReady starts the line the child prints once the model serves, followed by the
	// predict URL, the API key and its pprof server's address.
	devStackReady = "DEVSTACK READY "
	// devStackStart bounds the child's start: the stack, the package's build and the replica.
	devStackStart = 3 * time.Minute
)

// runDevStack is the child: it starts the stack, deploys the test model, prints the ready
// line and serves until it is told to stop.
func runDevStack(responseBytes int) {
	benchenv.Main("bench/gateway (dev stack)", func(ctx context.Context) error {
		logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "dev stack: "+format+"\n", args...) }
		env, err := benchenv.Start(ctx, benchenv.Options{
			TempPrefix: "modelplane-bench-gateway-dev-",
			Database:   "benchgwdev",
			// Warnings only, on stderr (the row's log file), as the standalone gateway logs.
			Handler: func(slog.Handler) slog.Handler {
				return slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
			},
			Progress: logf,
		})
		if err != nil {
			return err
		}
		defer env.Close()
		logf("deploying the test model")
		modelID, depID, err := env.CreateModel(ctx, "bench", "--latency", "0", "--response-bytes", strconv.Itoa(responseBytes), "--quiet")
		if err != nil {
			return err
		}
		if err := env.Autoscale(ctx, modelID, depID, map[string]any{"min_replica": 1, "max_replica": 1}); err != nil {
			return err
		}
		if _, err := env.WaitFor(ctx, modelID, depID, 100*time.Millisecond, devStackStart, nil, "ACTIVE with 1 READY",
			func(d apiv1.DeploymentV1) bool {
				return d.Status == modelplane.DeploymentActive && d.ActiveReplicaCount == 1
			}); err != nil {
			return err
		}
		// Its profile, on -profile, comes from a pprof server of its own.
		pprofLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		go http.Serve(pprofLn, http.DefaultServeMux) //nolint:errcheck // ends with the process
		fmt.Printf("%s%s/models/%s/deployment/%s/predict %s %s\n", devStackReady, env.Stack.APIURL, modelID, depID,
			env.Stack.NewAPIKey, pprofLn.Addr())
		<-ctx.Done()
		return nil
	})
}

// startDevStack starts the child and waits for its ready line.
func startDevStack(ctx context.Context, dir string, responseBytes int) (*target, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	p, err := startProcess(dir, "devstack", false, self, "-serve-dev-stack", "-response-bytes", strconv.Itoa(responseBytes))
	if err != nil {
		return nil, nil, err
	}
	var url, key, pprofAddr string
	err = p.waitReady(ctx, devStackStart, func(context.Context) error {
		var ok bool
		if url, key, pprofAddr, ok = readyLine(p.log); !ok {
			return fmt.Errorf("no %q line yet", strings.TrimSpace(devStackReady))
		}
		return nil
	})
	if err != nil {
		p.stop()
		return nil, nil, err
	}
	return &target{name: rowDev, url: url, apiKey: key, procs: []*process{p}, pprofAddr: pprofAddr}, p.stop, nil
}

// readyLine finds the child's ready line in its log.
func readyLine(path string) (url, key, pprofAddr string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", "", false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, found := strings.CutPrefix(s.Text(), devStackReady); found {
			if f := strings.Fields(rest); len(f) == 3 {
				return f[0], f[1], f[2], true
			}
		}
	}
	return "", "", "", false
}
