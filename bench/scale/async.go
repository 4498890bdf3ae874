package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelplane/modelplane/bench/internal/benchgw"
	"github.com/modelplane/modelplane/gateway"
)

// asyncFigures are what queueing async requests took and cost.
type asyncFigures struct {
	count, accepted int
	others          map[int]int
	elapsed         time.Duration
	// tableBytes is pg_total_relation_size of async_requests, before and after.
	tableBefore, tableAfter int64
	heapBefore, heapAfter   uint64
}

// queueAsync posts count async_predict requests for modelID's production deployment, which
// is at zero, through the gateway's handler from clients goroutines.
func queueAsync(ctx context.Context, fl *fleet, gw *gateway.Gateway, h http.Handler, modelID string, count, clients int) (*asyncFigures, error) {
	a := &asyncFigures{count: count, others: map[int]int{}}
	size := func() (int64, error) {
		var n int64
		err := fl.db.GetContext(ctx, &n, `SELECT pg_total_relation_size('async_requests')`)
		return n, err
	}
	var err error
	if a.tableBefore, err = size(); err != nil {
		return nil, err
	}
	path := "/models/" + modelID + "/production/async_predict"
	const body = `{"model_input": {"prompt": "a request of the size of a short prompt"}}`
	send := func() int {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Api-Key "+fl.key)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := send(); code != http.StatusCreated {
		return nil, fmt.Errorf("async_predict answered %d, want 201", code)
	}
	a.heapBefore = benchgw.HeapInUse()
	var next atomic.Int64
	next.Store(1) // the first went above
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := map[int]int{}
			for next.Add(1) <= int64(count) {
				mine[send()]++
			}
			mu.Lock()
			for code, n := range mine {
				if code == http.StatusCreated {
					a.accepted += n
				} else {
					a.others[code] += n
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	a.elapsed = time.Since(start)
	a.accepted++ // the first
	a.heapAfter = benchgw.HeapInUse()
	if a.tableAfter, err = size(); err != nil {
		return nil, err
	}
	runtime.KeepAlive(gw)
	return a, nil
}

func reportAsync(cfg config, f figures) {
	a := f.async
	fmt.Printf("### %d queued async requests\n\n", a.count)
	fmt.Printf("At %d models: POST /models/{model_id}/production/async_predict through the gateway's handler (called in process) from %d clients, for a production deployment at zero, so every request stays QUEUED. The gateway has no Temporal client (only acceptance is measured), its async rate limit is off and its open-request limit and the workspace's async_requests quota are raised above the count. Body: %d bytes of model_input. The baseline is the table and heap before the stream, with one request queued.\n\n",
		f.models, cfg.asyncClients, len(`{"prompt": "a request of the size of a short prompt"}`))
	fmt.Printf("| requests | accepted (201) | other answers | elapsed | accepted/s | async_requests size before | after | per request | gateway heap in use before | after | per request |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	others := "none"
	if len(a.others) > 0 {
		others = fmt.Sprint(a.others)
	}
	fmt.Printf("| %d | %d | %s | %s | %.0f | %.1f MiB | %.1f MiB | %.0f B | %.1f MiB | %.1f MiB | %.1f B |\n\n",
		a.count, a.accepted, others, a.elapsed.Round(time.Millisecond), float64(a.accepted)/a.elapsed.Seconds(),
		benchgw.MiB(uint64(a.tableBefore)), benchgw.MiB(uint64(a.tableAfter)), float64(a.tableAfter-a.tableBefore)/float64(a.accepted),
		benchgw.MiB(a.heapBefore), benchgw.MiB(a.heapAfter), (float64(a.heapAfter)-float64(a.heapBefore))/float64(a.accepted))
}
