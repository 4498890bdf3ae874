package gateway

import "container/list"

// lru is a map bounded to size entries that drops its least recently used entry to make
// room. It does not lock: its owner does.
type lru[K comparable, V any] struct {
	size  int
	order *list.List // of *lruEntry, most recently used first
	m     map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key   K
	value V
}

func newLRU[K comparable, V any](size int) *lru[K, V] {
	return &lru[K, V]{size: max(1, size), order: list.New(), m: map[K]*list.Element{}}
}

// get returns the key's value and marks it used.
func (c *lru[K, V]) get(key K) (V, bool) {
	e, ok := c.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).value, true
}

// put sets the key's value and marks it used, dropping the least recently used entry when
// the map is full.
func (c *lru[K, V]) put(key K, value V) {
	if e, ok := c.m[key]; ok {
		e.Value.(*lruEntry[K, V]).value = value
		c.order.MoveToFront(e)
		return
	}
	if c.order.Len() >= c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.m, oldest.Value.(*lruEntry[K, V]).key)
	}
	c.m[key] = c.order.PushFront(&lruEntry[K, V]{key: key, value: value})
}

func (c *lru[K, V]) remove(key K) {
	if e, ok := c.m[key]; ok {
		c.order.Remove(e)
		delete(c.m, key)
	}
}

func (c *lru[K, V]) clear() {
	c.order.Init()
	clear(c.m)
}

func (c *lru[K, V]) len() int { return c.order.Len() }
