package settings

import (
	"bytes"
	"encoding/json"
)

// Optional is a numeric setting that may be unset, which JSON writes as null. Unlike a
// pointer it compares with ==, so settings holding one still do.
type Optional[T int | float64] struct {
	value T
	set   bool
}

// OptionalInt is an integer setting that may be unset.
type OptionalInt = Optional[int]

// OptionalFloat is a number setting that may be unset.
type OptionalFloat = Optional[float64]

// Some is an Optional set to v.
func Some[T int | float64](v T) Optional[T] { return Optional[T]{value: v, set: true} }

// SomeInt is an OptionalInt set to v.
func SomeInt(v int) OptionalInt { return Some(v) }

// Get is the value and whether it is set.
func (o Optional[T]) Get() (T, bool) { return o.value, o.set }

// Ptr is the value as a pointer, nil when unset.
func (o Optional[T]) Ptr() *T {
	if !o.set {
		return nil
	}
	v := o.value
	return &v
}

// MarshalJSON writes the value, or null when unset.
func (o Optional[T]) MarshalJSON() ([]byte, error) {
	if !o.set {
		return []byte("null"), nil
	}
	return json.Marshal(o.value)
}

// UnmarshalJSON reads a number, or null as unset.
func (o *Optional[T]) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*o = Optional[T]{}
		return nil
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*o = Some(v)
	return nil
}
