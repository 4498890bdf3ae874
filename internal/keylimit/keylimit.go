// Package keylimit is a token bucket per key (a workspace, a client address) in an LRU of
// bounded size.
package keylimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/modelplane/modelplane/internal/lru"
)

// Limiter is a token bucket per key: async requests per workspace, failed authentications
// per client address. The buckets are in an LRU of bounded size, so that a flood of keys
// (addresses) cannot grow it without bound; a key dropped from it starts over with a full
// bucket. A negative rate is no limit.
type Limiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     *lru.LRU[string, *rate.Limiter]
}

// maxLimitedKeys bounds the keys whose buckets a limiter keeps.
const maxLimitedKeys = 10000

// New makes a limiter of perSecond tokens a second per key, burst at most.
func New(perSecond float64, burst int) *Limiter {
	l := &Limiter{limit: rate.Limit(perSecond), burst: max(1, burst), m: lru.New[string, *rate.Limiter](maxLimitedKeys)}
	if perSecond < 0 {
		l.limit = rate.Inf
	}
	return l
}

// Take takes a token of the key's bucket; ok false means the key is over its limit, and wait
// how long until it is not.
func (l *Limiter) Take(key string, now time.Time) (wait time.Duration, ok bool) {
	if l.limit == rate.Inf {
		return 0, true
	}
	l.mu.Lock()
	lim, found := l.m.Get(key)
	if !found {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m.Put(key, lim)
	}
	l.mu.Unlock()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// Allowed reports whether the key's bucket holds a token now, taking none: a caller that
// refuses before doing the work (checking a key) and takes a token only when the work fails.
func (l *Limiter) Allowed(key string, now time.Time) bool {
	if l.limit == rate.Inf {
		return true
	}
	l.mu.Lock()
	lim, found := l.m.Get(key)
	l.mu.Unlock()
	return !found || lim.TokensAt(now) >= 1
}
