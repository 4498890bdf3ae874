package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// requestBody is what every prediction sends: small, so that the figures are about the hop.
var requestBody = []byte(`{"inputs": [[0.1, 0.2, 0.3, 0.4]]}`)

// target is one way to reach the test model's /predict.
type target struct {
	name   string
	url    string
	apiKey string     // sent as "Authorization: Api-Key <key>" when set
	procs  []*process // the servers it needs, checked after each run
	client *http.Client
	// pprofAddr serves the process's /debug/pprof/ when it was started with one.
	pprofAddr string
}

// newClient returns an HTTP/1.1 client that keeps up to conns connections open between
// requests, so that every run measures requests on warm connections, not connection setup.
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		},
	}
}

// predict sends one prediction and reads the whole answer; a status other than 200 is an error.
func (t *target) predict(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(requestBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.apiKey != "" {
		req.Header.Set("Authorization", "Api-Key "+t.apiKey)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s answered %d: %s", t.name, resp.StatusCode, bytes.TrimSpace(b))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// sample is what one run against one target measured.
type sample struct {
	requests int // answered 200 within the measured time
	errors   int
	firstErr error
	rps      float64
	p50, p99 time.Duration
}

// tally collects a run's outcomes from many goroutines.
type tally struct {
	hist     histogram
	errors   atomic.Int64
	firstErr atomic.Pointer[error]
}

func (t *tally) record(latency time.Duration, err error) {
	if err != nil {
		t.errors.Add(1)
		t.firstErr.CompareAndSwap(nil, &err)
		return
	}
	t.hist.add(latency)
}

func (t *tally) sample(d time.Duration) sample {
	s := sample{requests: int(t.hist.count()), errors: int(t.errors.Load()),
		p50: t.hist.quantile(0.50), p99: t.hist.quantile(0.99)}
	s.rps = float64(s.requests) / d.Seconds()
	if e := t.firstErr.Load(); e != nil {
		s.firstErr = *e
	}
	return s
}

// closedLoop runs clients that each send a request as soon as their previous one is answered,
// for warmup and then d; only requests sent during d count. It measures peak throughput.
func closedLoop(ctx context.Context, t *target, clients int, warmup, d time.Duration) sample {
	t.client.CloseIdleConnections() // the server may have closed them since the last run
	var res tally
	measureFrom := time.Now().Add(warmup)
	end := measureFrom.Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(end) {
					return
				}
				err := t.predict(ctx)
				if !start.Before(measureFrom) && ctx.Err() == nil {
					res.record(time.Since(start), err)
				}
			}
		})
	}
	wg.Wait()
	return res.sample(d)
}

// openLoop sends rate requests a second on a fixed schedule, for warmup and then d, whatever
// the answers take; only requests scheduled during d count. A request's latency runs from its
// scheduled time, so time spent waiting for a free sender behind slow answers counts
// (no coordinated omission). The one exception is the scheduler's own lateness: Go's timers
// wake up to a millisecond late, so a request released late by the timer is timed from its
// release, which keeps the timer's granularity out of the figures.
func openLoop(ctx context.Context, t *target, rate float64, senders int, warmup, d time.Duration) sample {
	t.client.CloseIdleConnections()
	type job struct {
		from    time.Time // when its latency starts
		measure bool
	}
	total := int(math.Round(rate * (warmup + d).Seconds()))
	warmupJobs := int(math.Round(rate * warmup.Seconds()))
	// A second's worth of queue, so the scheduler does not block behind busy senders.
	jobs := make(chan job, max(int(rate), 1024))
	var res tally
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for j := range jobs {
				err := t.predict(ctx)
				if j.measure && ctx.Err() == nil {
					res.record(time.Since(j.from), err)
				}
			}
		})
	}

	start := time.Now()
	at := func(i int) time.Time { return start.Add(time.Duration(float64(i) / rate * float64(time.Second))) }
	timer := time.NewTimer(0)
	defer timer.Stop()
	woke := start
schedule:
	for i := 0; i < total; {
		now := time.Now()
		for ; i < total && !at(i).After(now); i++ {
			from := at(i)
			if woke.After(from) {
				from = woke
			}
			select {
			case jobs <- job{from: from, measure: i >= warmupJobs}:
			case <-ctx.Done():
				break schedule
			}
		}
		if i == total {
			break
		}
		timer.Reset(time.Until(at(i)))
		select {
		case <-timer.C:
			woke = time.Now()
		case <-ctx.Done():
			break schedule
		}
	}
	close(jobs)
	wg.Wait()
	return res.sample(d)
}

// Histogram buckets: values below 2^(histSub+1) ns are exact; above, each power of two is cut
// into 2^histSub buckets, so a quantile is within 1/2^(histSub+1) (0.2%) of the exact value.
// Memory is fixed whatever the number of requests.
const (
	histSub      = 8
	histMaxShift = 30 // values up to 2^39 ns (9 minutes); longer ones count as that
	histBuckets  = (histMaxShift + 2) << histSub
)

// histogram counts latencies; add is safe from many goroutines.
type histogram struct {
	counts [histBuckets]atomic.Uint64
}

func (h *histogram) add(d time.Duration) {
	v := uint64(max(d, 0))
	v = min(v, 1<<(histMaxShift+histSub+1)-1)
	h.counts[bucketOf(v)].Add(1)
}

func bucketOf(v uint64) int {
	shift := max(bits.Len64(v)-histSub-1, 0)
	return shift<<histSub + int(v>>shift)
}

// bucketValue is the middle of bucket i.
func bucketValue(i int) uint64 {
	if i < 2<<histSub {
		return uint64(i)
	}
	shift := i>>histSub - 1
	low := uint64(i-shift<<histSub) << shift
	return low + (1<<shift)/2
}

func (h *histogram) count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// quantile returns the latency that a fraction q of the counted ones do not exceed.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count()
	if n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(n))), 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(bucketValue(histBuckets - 1))
}
