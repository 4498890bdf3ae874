// Command keyflood measures what a flood of unknown API keys costs the inference gateway in
// memory: it sends a stream of random, well-formed keys through the gateway's authentication
// and reports the heap in use after a forced GC, against the heap in use before the stream
// in the same run as the baseline.
//
// It makes a fresh database (as the tests do) and runs the gateway in this process, calling
// its handler directly so that the heap measured is the gateway's. Each request comes from a
// random address in 10.0.0.0/8, so the per-address limit of failed authentications keeps a
// bucket for each as well: both the key cache and those buckets must stay bounded.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/bench/internal/benchdb"
	"github.com/modelplane/modelplane/bench/internal/benchgw"
	"github.com/modelplane/modelplane/gateway"
)

func main() {
	keys := flag.Int("keys", 200000, "random keys sent")
	clients := flag.Int("clients", 8, "concurrent clients")
	flag.Parse()
	if err := run(*keys, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "keyflood:", err)
		os.Exit(1)
	}
}

func run(keys, clients int) error {
	ctx := context.Background()
	bdb, err := benchdb.Open(ctx)
	if err != nil {
		return err
	}
	defer bdb.Close()
	db, u, modelID, key := bdb.DB, bdb.URL, bdb.ModelID, bdb.Key

	gw, stop, err := benchgw.Start(ctx, gateway.Options{DB: db, DatabaseURL: u})
	if err != nil {
		return err
	}
	defer stop()
	h := gw.Handler(nil)
	// The model has no deployment: an accepted key gets 404, after authentication.
	path := "/models/" + modelID + "/production/predict"
	send := func(key string) int {
		req := httptest.NewRequest(http.MethodPost, path, http.NoBody)
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:40000", rand.IntN(256), rand.IntN(256), rand.IntN(256))
		req.Header.Set("Authorization", "Api-Key "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}

	// Warm up the paths the stream takes (a known key and a few unknown ones), so that the
	// baseline holds what any serving gateway holds.
	for i := range 1000 {
		if i%10 == 0 {
			send(randomKey())
		} else if code := send(key); code != http.StatusNotFound {
			return fmt.Errorf("the known key got %d, want 404", code)
		}
	}
	before := benchgw.HeapInUse()

	// The stream goes in two halves, the heap read after each: bounded, the second half adds
	// nothing to the first.
	var mu sync.Mutex
	statuses := map[int]int{}
	var elapsed time.Duration
	stream := func(n int) {
		var next atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := map[int]int{}
				for next.Add(1) <= int64(n) {
					mine[send(randomKey())]++
				}
				mu.Lock()
				for code, n := range mine {
					statuses[code] += n
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		elapsed += time.Since(start)
	}
	stream(keys / 2)
	half := benchgw.HeapInUse()
	stream(keys - keys/2)
	after := benchgw.HeapInUse()
	if code := send(key); code != http.StatusNotFound {
		return fmt.Errorf("after the stream the known key got %d, want 404", code)
	}

	host, _ := os.Hostname()
	fmt.Printf("## Gateway memory under a flood of unknown API keys\n\n")
	fmt.Printf("Run %s on %s (%d CPUs, %s/%s, %s): `go run ./bench/keyflood -keys %d -clients %d`. %d random well-formed keys through the gateway's authentication (its handler called in process, each request from a random address in 10.0.0.0/8), %d clients, PostgreSQL on loopback; key cache of %d keys, failed authentications limited to %d per second and address in bursts of %d. Heap in use is read after a forced GC; the baseline is the same gateway's before the stream, after a warm-up of 1000 requests.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		runtime.Version(), keys, clients, keys, clients, gateway.DefaultKeyCacheSize,
		gateway.DefaultFailedAuthRateLimit, gateway.DefaultFailedAuthBurst)
	fmt.Printf("| heap in use before the stream (baseline) | after half the stream | after the stream | after vs baseline | keys/s | answered 401 | answered 429 | other |\n|---|---|---|---|---|---|---|---|\n")
	other := keys - statuses[http.StatusUnauthorized] - statuses[http.StatusTooManyRequests]
	fmt.Printf("| %.1f MiB | %.1f MiB | %.1f MiB | %.2fx | %.0f | %d | %d | %d |\n\n", benchgw.MiB(before), benchgw.MiB(half), benchgw.MiB(after), float64(after)/float64(before),
		float64(keys)/elapsed.Seconds(), statuses[http.StatusUnauthorized], statuses[http.StatusTooManyRequests], other)
	return nil
}

// randomKey is a well-formed key that no database has.
func randomKey() string { return "mp_" + modelplane.NewID(12) + "_" + modelplane.NewID(32) }
