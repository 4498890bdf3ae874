// Command testmodel serves the test model (package testmodel): a model server without a
// model, for tests and benchmarks. Run it as a package's `process` runtime command:
//
//	testmodel --load-time 5s --latency 50ms --failure-rate 0.01 --response-bytes 1024 --fail-first 2
//
// It listens on --listen-host:--port (host default: $MODELPLANE_BIND, else 127.0.0.1; port
// default: $PORT, else 8080), as the agent's process runtime tells it, and, on SIGTERM or
// SIGINT, stops accepting connections, lets in-flight requests finish and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/modelplane/modelplane/testmodel"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run parses flags and serves until a signal; it returns the exit status.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testmodel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts testmodel.Options
	fs.DurationVar(&opts.LoadTime, "load-time", 0, "how long /health answers 503 after start")
	fs.DurationVar(&opts.Latency, "latency", 0, "how long each prediction takes")
	fs.Float64Var(&opts.FailureRate, "failure-rate", 0, "probability (0-1) that a prediction answers 500")
	fs.IntVar(&opts.ResponseBytes, "response-bytes", 0, `length of the "pad" field of each answer`)
	fs.IntVar(&opts.FailFirst, "fail-first", 0, "the first N predictions of each X-Request-Id answer 500")
	fs.IntVar(&opts.Port, "port", defaultPort(getenv), "port to listen on (default $PORT, else 8080)")
	host := fs.String("listen-host", defaultHost(getenv), "address to listen on (default $MODELPLANE_BIND, else 127.0.0.1)")
	quiet := fs.Bool("quiet", false, "write no line to stdout for each request")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "testmodel: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "testmodel: %v\n", err)
		return 2
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("test model starting", "host", *host, "port", opts.Port, "load_time", opts.LoadTime,
		"latency", opts.Latency, "failure_rate", opts.FailureRate, "response_bytes", opts.ResponseBytes,
		"pid", os.Getpid())
	if *quiet {
		stdout = io.Discard
	}
	if err := testmodel.ListenAndServe(ctx, *host, opts, stdout); err != nil {
		log.Error("test model failed", "err", err)
		return 1
	}
	log.Info("test model stopped")
	return 0
}

// defaultHost is $MODELPLANE_BIND, which the agent's process runtime sets to its replica host,
// else 127.0.0.1.
func defaultHost(getenv func(string) string) string {
	if h := getenv("MODELPLANE_BIND"); h != "" {
		return h
	}
	return "127.0.0.1"
}

// defaultPort is $PORT, which the agent's process runtime sets, else 8080.
func defaultPort(getenv func(string) string) int {
	if p, err := strconv.Atoi(getenv("PORT")); err == nil {
		return p
	}
	return 8080
}
