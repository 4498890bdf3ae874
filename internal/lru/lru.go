// Package lru is a map bounded in size that drops its least recently used entry.
package lru

import "container/list"

// LRU is a map bounded to size entries that drops its least recently used entry to make
// room. It does not lock: its owner does.
type LRU[K comparable, V any] struct {
	size  int
	order *list.List // of *entry, most recently used first
	m     map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key   K
	value V
}

// New makes an LRU of at most size entries (at least one).
func New[K comparable, V any](size int) *LRU[K, V] {
	return &LRU[K, V]{size: max(1, size), order: list.New(), m: map[K]*list.Element{}}
}

// Get returns the key's value and marks it used.
func (c *LRU[K, V]) Get(key K) (V, bool) {
	e, ok := c.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*entry[K, V]).value, true
}

// Put sets the key's value and marks it used, dropping the least recently used entry when
// the map is full.
func (c *LRU[K, V]) Put(key K, value V) {
	if e, ok := c.m[key]; ok {
		e.Value.(*entry[K, V]).value = value
		c.order.MoveToFront(e)
		return
	}
	if c.order.Len() >= c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.m, oldest.Value.(*entry[K, V]).key)
	}
	c.m[key] = c.order.PushFront(&entry[K, V]{key: key, value: value})
}

// Remove drops the key.
func (c *LRU[K, V]) Remove(key K) {
	if e, ok := c.m[key]; ok {
		c.order.Remove(e)
		delete(c.m, key)
	}
}

// Clear drops every key.
func (c *LRU[K, V]) Clear() {
	c.order.Init()
	clear(c.m)
}

// Len is the number of keys held.
func (c *LRU[K, V]) Len() int { return c.order.Len() }
