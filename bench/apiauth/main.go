// Command apiauth measures what API-key authentication and a model read cost on the
// management API, against /healthz on the same server in the same run as the baseline.
//
// It makes a fresh database (as the tests do), serves the API on loopback, and drives each
// route with the same closed loop of concurrent clients for a fixed time.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/bench/internal/benchdb"
)

type result struct {
	name     string
	requests int
	errors   int
	rps      float64
	p50, p99 time.Duration
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "how long each route is driven")
	clients := flag.Int("clients", 8, "concurrent clients")
	flag.Parse()
	if err := run(*duration, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "apiauth:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, clients int) error {
	ctx := context.Background()
	bdb, err := benchdb.Open(ctx)
	if err != nil {
		return err
	}
	defer bdb.Close()
	db, modelID, key := bdb.DB, bdb.ModelID, bdb.Key

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: api.New(api.Deps{DB: db, Registry: prometheus.NewRegistry()})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	baseline := drive(hc, "GET /healthz (no auth, no database)", base+"/healthz", "", duration, clients)
	authed := drive(hc, "GET /v1/models/{id} (API key + model read)", base+"/v1/models/"+modelID, key, duration, clients)
	rejected := drive(hc, "GET /v1/models/{id} with an unknown key (401)", base+"/v1/models/"+modelID,
		"mp_"+strings.Repeat("x", 12)+"_"+strings.Repeat("y", 32), duration, clients)

	host, _ := os.Hostname()
	fmt.Printf("## API authentication cost\n\n")
	fmt.Printf("Run %s on %s (%d CPUs, %s/%s, %s), %d clients, %s per route; PostgreSQL on loopback.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		runtime.Version(), clients, duration)
	fmt.Printf("| route | requests | errors | req/s | p50 | p99 | req/s vs baseline |\n|---|---|---|---|---|---|---|\n")
	for _, r := range []result{baseline, authed, rejected} {
		fmt.Printf("| %s | %d | %d | %.0f | %s | %s | %.2fx |\n", r.name, r.requests, r.errors, r.rps,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.rps/baseline.rps)
	}
	fmt.Println()
	return nil
}

// drive runs a closed loop of clients against url for d and summarises latency.
func drive(hc *http.Client, name, url, key string, d time.Duration, clients int) result {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if key != "" {
					req.Header.Set("Authorization", "Api-Key "+key)
				}
				start := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					bad++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(start))
				if resp.StatusCode >= 500 {
					bad++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))]
	}
	return result{name: name, requests: len(lat), errors: errs, rps: float64(len(lat)) / d.Seconds(), p50: q(0.5), p99: q(0.99)}
}
