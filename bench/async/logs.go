package main

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// logCounter counts the stack's warnings and errors by message, and passes its log on to
// next (Info and above) when there is one.
type logCounter struct {
	next   slog.Handler
	mu     *sync.Mutex
	counts map[string]int
}

func newLogCounter(next slog.Handler) *logCounter {
	return &logCounter{next: next, mu: &sync.Mutex{}, counts: map[string]int{}}
}

func (l *logCounter) Enabled(_ context.Context, level slog.Level) bool {
	if l.next != nil {
		return level >= slog.LevelInfo
	}
	return level >= slog.LevelWarn
}

func (l *logCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		l.mu.Lock()
		l.counts[r.Message]++
		l.mu.Unlock()
	}
	if l.next != nil {
		return l.next.Handle(ctx, r)
	}
	return nil
}

func (l *logCounter) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := *l
	if l.next != nil {
		out.next = l.next.WithAttrs(attrs)
	}
	return &out
}

func (l *logCounter) WithGroup(name string) slog.Handler {
	out := *l
	if l.next != nil {
		out.next = l.next.WithGroup(name)
	}
	return &out
}

// total is how many warnings and errors were logged.
func (l *logCounter) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.counts {
		n += c
	}
	return n
}

// top names the k most frequent messages with their counts.
func (l *logCounter) top(k int) string {
	l.mu.Lock()
	type kv struct {
		msg string
		n   int
	}
	var all []kv
	for m, n := range l.counts {
		all = append(all, kv{m, n})
	}
	l.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].msg < all[j].msg
	})
	var parts []string
	for _, e := range all[:min(k, len(all))] {
		parts = append(parts, fmt.Sprintf("%q ×%d", e.msg, e.n))
	}
	return strings.Join(parts, ", ")
}
