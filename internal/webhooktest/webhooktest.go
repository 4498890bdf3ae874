// Package webhooktest is a webhook receiver for tests: it checks every delivery's signature
// and shape and counts deliveries by async request and delivery ID, so that a test can say
// each request was delivered once, under one ID.
package webhooktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/modelplane/modelplane/webhook"
)

// Receiver is an http.Handler that accepts async completions signed with Secret.
type Receiver struct {
	Secret string
	mu     sync.Mutex
	ids    map[string]map[string]int // request ID → delivery ID → times received
	bad    []string
}

// New returns a receiver checking signatures against secret.
func New(secret string) *Receiver {
	return &Receiver{Secret: secret, ids: map[string]map[string]int{}}
}

// ServeHTTP records one delivery and answers 204.
func (d *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p struct {
		RequestID string          `json:"request_id"`
		Type      string          `json:"type"`
		Data      json.RawMessage `json:"data"`
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := webhook.Verify(d.Secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		d.bad = append(d.bad, "signature: "+err.Error())
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type != "async_request_completed" {
		d.bad = append(d.bad, fmt.Sprintf("payload %s: %v", body, err))
	}
	if d.ids[p.RequestID] == nil {
		d.ids[p.RequestID] = map[string]int{}
	}
	d.ids[p.RequestID][r.Header.Get("X-Modelplane-Delivery-Id")]++
	w.WriteHeader(http.StatusNoContent)
}

// Requests is how many distinct requests were delivered.
func (d *Receiver) Requests() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ids)
}

// Deliveries returns, for requestID, how many times each delivery ID arrived.
func (d *Receiver) Deliveries(requestID string) map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for id, n := range d.ids[requestID] {
		out[id] = n
	}
	return out
}

// Bad lists the deliveries that were unsigned, wrongly signed or malformed.
func (d *Receiver) Bad() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.bad...)
}
