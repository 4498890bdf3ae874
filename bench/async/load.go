package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// route is where load goes: a deployment's predict or async_predict, with the body sent and
// the status every answer must have.
type route struct {
	name  string
	url   string
	body  []byte
	want  int
	async bool // the answer carries a request_id to keep
}

// predictRoute is synchronous predict on the deployment, answered 200 with the model's output.
func (b *bench) predictRoute(modelID, depID string) route {
	return route{name: "predict", url: b.Stack.APIURL + "/models/" + modelID + "/deployment/" + depID + "/predict",
		body: []byte(`{"bench":"async"}`), want: http.StatusOK}
}

// asyncRoute is async_predict on the deployment, with the same model input and no webhook,
// answered 201 with the request's ID.
func (b *bench) asyncRoute(modelID, depID string) route {
	return route{name: "async_predict", url: b.Stack.APIURL + "/models/" + modelID + "/deployment/" + depID + "/async_predict",
		body: []byte(`{"model_input":{"bench":"async"}}`), want: http.StatusCreated, async: true}
}

// loadResult is what one run of closed-loop clients saw.
type loadResult struct {
	requests int
	// bad counts answers without the wanted status, and requests with no answer.
	bad      int
	firstBad string
	// latencies are the good answers' times, from send until the body was read.
	latencies []time.Duration
	// began is when the first request was sent; elapsed from then until the last answer.
	began   time.Time
	elapsed time.Duration
	ids     []string // async: the accepted requests' IDs
}

func (r loadResult) perSecond() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests-r.bad) / r.elapsed.Seconds()
}

// drive runs `clients` closed-loop clients on rt: each sends a request, reads the whole
// answer and sends the next. With n > 0 they send n requests in all; otherwise they send
// until d has passed (a request in flight then is finished and counted).
func (b *bench) drive(ctx context.Context, rt route, clients, n int, d time.Duration) loadResult {
	var (
		mu    sync.Mutex
		res   loadResult
		sent  atomic.Int64
		wg    sync.WaitGroup
		start = time.Now()
		until = start.Add(d)
	)
	res.began = start
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var ids []string
			bad, firstBad := 0, ""
			for ctx.Err() == nil {
				if n > 0 {
					if sent.Add(1) > int64(n) {
						break
					}
				} else if !time.Now().Before(until) {
					break
				}
				t := time.Now()
				id, err := b.send(ctx, rt)
				if err != nil {
					if bad++; firstBad == "" {
						firstBad = err.Error()
					}
					continue
				}
				lat = append(lat, time.Since(t))
				if rt.async {
					ids = append(ids, id)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.requests += len(lat) + bad
			res.bad += bad
			if res.firstBad == "" {
				res.firstBad = firstBad
			}
			res.latencies = append(res.latencies, lat...)
			res.ids = append(res.ids, ids...)
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// send sends one request on rt and reads its answer; an answer without rt's status is an
// error. For async_predict it returns the request's ID.
func (b *bench) send(ctx context.Context, rt route) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rt.url, bytes.NewReader(rt.body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Api-Key "+b.Stack.NewAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.hc.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", fmt.Errorf("%s: reading the answer: %w", rt.name, err)
	}
	if resp.StatusCode != rt.want {
		return "", fmt.Errorf("%s answered %d, want %d: %s", rt.name, resp.StatusCode, rt.want, bytes.TrimSpace(body))
	}
	if !rt.async {
		return "", nil
	}
	var out struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.RequestID == "" {
		return "", fmt.Errorf("%s answered %d without a request_id: %s", rt.name, resp.StatusCode, bytes.TrimSpace(body))
	}
	return out.RequestID, nil
}

// openLoop sends rate requests a second on rt for d on a fixed schedule, whatever the answers
// take: each request is sent in its own goroutine, at most inFlight at once. A request's
// latency runs from its scheduled time, so time spent waiting for a free place counts.
func (b *bench) openLoop(ctx context.Context, rt route, rate float64, d time.Duration, inFlight int) loadResult {
	var (
		mu    sync.Mutex
		res   loadResult
		wg    sync.WaitGroup
		slots = make(chan struct{}, inFlight)
		total = int(math.Round(rate * d.Seconds()))
		start = time.Now()
	)
	res.began = start
	for i := 0; i < total && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if err := sleep(ctx, time.Until(at)); err != nil {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			id, err := b.send(ctx, rt)
			lat := time.Since(at)
			mu.Lock()
			defer mu.Unlock()
			res.requests++
			if err != nil {
				if res.bad++; res.firstBad == "" {
					res.firstBad = err.Error()
				}
				return
			}
			res.latencies = append(res.latencies, lat)
			if rt.async {
				res.ids = append(res.ids, id)
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}
