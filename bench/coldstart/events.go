package main

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/modelplane/modelplane"
)

// The stack's log messages the benchmark times phases by.
const (
	msgStatus        = "deployment status"            // workflow: status, deployment_id
	msgServerStarted = "replica server started"       // agent: replica_id, deployment_id
	msgReplicaReady  = "replica ready"                // agent: replica_id (first passed health check)
	msgReplicaStop   = "replica stopped"              // agent: replica_id
	msgScaled        = "autoscaler scaled deployment" // autoscaler: deployment_id, from, to
)

var recorded = map[string]bool{msgStatus: true, msgServerStarted: true, msgReplicaReady: true,
	msgReplicaStop: true, msgScaled: true}

// event is one recorded log record: its time, message and attributes as text.
type event struct {
	at    time.Time
	msg   string
	attrs map[string]string
}

// events is what a recorder keeps, shared by the handlers WithAttrs derives.
type events struct {
	mu   sync.Mutex
	list []event
}

// recorder is the stack's slog handler: it keeps the records the phases are timed by, with
// their time, and passes every record at Info or above to next when there is one (-log).
type recorder struct {
	ev    *events
	attrs []slog.Attr
	next  slog.Handler
}

func newRecorder(next slog.Handler) *recorder { return &recorder{ev: &events{}, next: next} }

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (r *recorder) Handle(ctx context.Context, rec slog.Record) error {
	if r.next != nil {
		_ = r.next.Handle(ctx, rec)
	}
	if !recorded[rec.Message] {
		return nil
	}
	e := event{at: rec.Time, msg: rec.Message, attrs: map[string]string{}}
	for _, a := range r.attrs {
		e.attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		e.attrs[a.Key] = a.Value.String()
		return true
	})
	r.ev.mu.Lock()
	r.ev.list = append(r.ev.list, e)
	r.ev.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), attrs...)
	if r.next != nil {
		c.next = r.next.WithAttrs(attrs)
	}
	return &c
}

// WithGroup keeps attribute keys as they are: the keys read here are never in a group.
func (r *recorder) WithGroup(name string) slog.Handler {
	c := *r
	if r.next != nil {
		c.next = r.next.WithGroup(name)
	}
	return &c
}

// snapshot returns the events recorded so far, in the order they were logged.
func (r *recorder) snapshot() []event {
	r.ev.mu.Lock()
	defer r.ev.mu.Unlock()
	return append([]event(nil), r.ev.list...)
}

// timeline indexes the recorded events of the deployments measured.
type timeline struct {
	all []event
	// replicaOf maps a replica to its deployment, from the agent's "server started".
	replicaOf map[string]string
}

func newTimeline(all []event) *timeline {
	t := &timeline{all: all, replicaOf: map[string]string{}}
	for _, e := range all {
		if e.msg == msgServerStarted {
			t.replicaOf[e.attrs["replica_id"]] = e.attrs["deployment_id"]
		}
	}
	return t
}

// deployment is the deployment an event is about.
func (t *timeline) deployment(e event) string {
	if d := e.attrs["deployment_id"]; d != "" {
		return d
	}
	return t.replicaOf[e.attrs["replica_id"]]
}

// first returns the time of the first event of the deployment in [from, to) that match
// accepts, and whether there was one.
func (t *timeline) first(dep string, from, to time.Time, match func(event) bool) (time.Time, bool) {
	for _, e := range t.all {
		if e.at.Before(from) || !e.at.Before(to) || t.deployment(e) != dep || !match(e) {
			continue
		}
		return e.at, true
	}
	return time.Time{}, false
}

// count returns how many of the deployment's events in [from, to] match accepts.
func (t *timeline) count(dep string, from, to time.Time, match func(event) bool) int {
	n := 0
	for _, e := range t.all {
		if !e.at.Before(from) && !e.at.After(to) && t.deployment(e) == dep && match(e) {
			n++
		}
	}
	return n
}

// busy reports whether any deployment other than dep changed (status, scale, replica start or
// stop) in [from, to].
func (t *timeline) busy(dep string, from, to time.Time) bool {
	for _, e := range t.all {
		if !e.at.Before(from) && !e.at.After(to) && t.deployment(e) != dep && t.deployment(e) != "" {
			return true
		}
	}
	return false
}

// isReplicaMsg matches the message about one replica.
func isReplicaMsg(msg, replicaID string) func(event) bool {
	return func(e event) bool { return e.msg == msg && e.attrs["replica_id"] == replicaID }
}

// isScaleTo matches the autoscaler's scales to exactly n replicas.
func isScaleTo(n int) func(event) bool {
	want := strconv.Itoa(n)
	return func(e event) bool { return e.msg == msgScaled && e.attrs["to"] == want }
}

func isStatus(status modelplane.DeploymentStatus) func(event) bool {
	return func(e event) bool { return e.msg == msgStatus && e.attrs["status"] == string(status) }
}
