package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyLimiter is a token bucket per key: async requests per workspace, failed authentications
// per client address. The buckets are in an LRU of bounded size, so that a flood of keys
// (addresses) cannot grow it without bound; a key dropped from it starts over with a full
// bucket. A negative rate is no limit.
type keyLimiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     *lru[string, *rate.Limiter]
}

// maxLimitedKeys bounds the keys whose buckets a limiter keeps.
const maxLimitedKeys = 10000

func newKeyLimiter(perSecond float64, burst int) *keyLimiter {
	l := &keyLimiter{limit: rate.Limit(perSecond), burst: max(1, burst), m: newLRU[string, *rate.Limiter](maxLimitedKeys)}
	if perSecond < 0 {
		l.limit = rate.Inf
	}
	return l
}

// take takes a token of the key's bucket; ok false means the key is over its limit, and wait
// how long until it is not.
func (l *keyLimiter) take(key string, now time.Time) (wait time.Duration, ok bool) {
	if l.limit == rate.Inf {
		return 0, true
	}
	l.mu.Lock()
	lim, found := l.m.get(key)
	if !found {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m.put(key, lim)
	}
	l.mu.Unlock()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}
