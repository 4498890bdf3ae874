// Package benchgw runs an inference gateway in a benchmark's own process, for benchmarks
// that call its handler directly, and reads the heap it holds.
package benchgw

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/modelplane/modelplane/gateway"
)

// Start creates the gateway (opts.Logger discards when nil), runs it and waits until it has
// loaded its routes; stop ends it and waits until Run has returned.
func Start(ctx context.Context, opts gateway.Options) (gw *gateway.Gateway, stop func(), err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	gw, err = gateway.New(opts)
	if err != nil {
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gw.Run(runCtx) }()
	stop = func() {
		cancel()
		<-done
	}
	for start := time.Now(); !gw.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			stop()
			return nil, nil, errors.New("the gateway never loaded its routes")
		}
	}
	return gw, stop, nil
}

// HeapInUse is the heap in use after a forced GC.
func HeapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// MiB is b bytes in mebibytes.
func MiB(b uint64) float64 { return float64(b) / (1 << 20) }
