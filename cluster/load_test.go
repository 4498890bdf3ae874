//go:build cluster

package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// gateways is the client side of a load balancer in front of the gateways: requests go to
// each in turn, and one that cannot connect is sent to the next, as a balancer's health
// check would take a dead gateway out.
type gateways struct {
	urls []string
	// out are the gateways the balancer has taken out of rotation: from when it saw one
	// dead until its /readyz answers again, as a balancer's readiness check does.
	out  []atomic.Bool
	next atomic.Uint64
	hc   *http.Client
	mu   sync.Mutex
	// kills are each gateway's kill windows, from just before the signal until the process
	// was gone: a request that fails after connecting and overlaps one was in flight on a
	// killed gateway.
	kills [][]window
}

// window is a span of time; a zero end is still open.
type window struct{ start, end time.Time }

// killing opens a kill window of gateway n; the returned func closes it.
func (g *gateways) killing(n int) func() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.kills[n] = append(g.kills[n], window{start: time.Now()})
	i := len(g.kills[n]) - 1
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.kills[n][i].end = time.Now()
	}
}

// killedDuring says whether gateway n was being killed at some time between start and end.
func (g *gateways) killedDuring(n int, start, end time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, w := range g.kills[n] {
		if !w.start.After(end) && (w.end.IsZero() || !w.end.Before(start)) {
			return true
		}
	}
	return false
}

func newGateways(urls ...string) *gateways {
	return &gateways{urls: urls, kills: make([][]window, len(urls)), out: make([]atomic.Bool, len(urls)),
		// A connection per request, so that a dead gateway is a refused connection for the
		// next request rather than a broken pooled one.
		hc: &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}}
}

// outcome is what one request came to.
type outcome struct {
	status   int
	body     []byte
	gateway  int  // the gateway that answered or failed it
	rerouted bool // a gateway refused the connection and the request went to another
	err      error
	// killedInFlight: the request had reached a gateway that was killed before it answered.
	killedInFlight bool
}

// do sends one request, to the next gateway in turn, and to the others when one refuses the
// connection.
func (g *gateways) do(ctx context.Context, method, path, key string, body []byte) outcome {
	first := int(g.next.Add(1) % uint64(len(g.urls)))
	var out outcome
	for i := range g.urls {
		n := (first + i) % len(g.urls)
		if g.out[n].Load() && i < len(g.urls)-1 {
			continue
		}
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, method, g.urls[n]+path, bytes.NewReader(body))
		if err != nil {
			return outcome{err: err}
		}
		req.Header.Set("Authorization", "Api-Key "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := g.hc.Do(req)
		out = outcome{gateway: n, rerouted: i > 0, err: err}
		if err != nil {
			if refused(err) {
				continue
			}
			out.killedInFlight = g.killedDuring(n, start, time.Now())
			return out
		}
		out.body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		out.status = resp.StatusCode
		if err != nil {
			out.err = err
			out.killedInFlight = g.killedDuring(n, start, time.Now())
		}
		return out
	}
	return out
}

func refused(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}

// tally counts a load's requests by what they came to.
type tally struct {
	mu       sync.Mutex
	sent     int
	ok       int
	rerouted int
	byServer map[string]int // answers by the deployment that served them
	failed   map[string]int // failures by cause
	// inFlightOnKilled are the failures allowed: requests a killed gateway held.
	inFlightOnKilled int
}

func newTally() *tally { return &tally{byServer: map[string]int{}, failed: map[string]int{}} }

func (t *tally) add(o outcome, server string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent++
	if o.rerouted {
		t.rerouted++
	}
	switch {
	case o.err != nil && o.killedInFlight:
		t.inFlightOnKilled++
	case o.err != nil:
		t.failed[fmt.Sprintf("gateway %d: %v", o.gateway+1, o.err)]++
	case o.status != http.StatusOK:
		t.failed[fmt.Sprintf("gateway %d: HTTP %d %s", o.gateway+1, o.status, firstLine(o.body))]++
	default:
		t.ok++
		t.byServer[server]++
	}
}

// failures lists the failures other than those in flight on a killed gateway.
func (t *tally) failures() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for cause, n := range t.failed {
		out = append(out, fmt.Sprintf("%d × %s", n, cause))
	}
	sort.Strings(out)
	return out
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}
