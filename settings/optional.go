package settings

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// OptionalInt is an integer setting that may be unset, which JSON writes as null. Unlike an
// *int it compares with ==, so settings holding one still do.
type OptionalInt struct {
	value int
	set   bool
}

// SomeInt is an OptionalInt set to v.
func SomeInt(v int) OptionalInt { return OptionalInt{value: v, set: true} }

// Get is the value and whether it is set.
func (o OptionalInt) Get() (int, bool) { return o.value, o.set }

// Ptr is the value as an *int, nil when unset.
func (o OptionalInt) Ptr() *int {
	if !o.set {
		return nil
	}
	v := o.value
	return &v
}

// MarshalJSON writes the value, or null when unset.
func (o OptionalInt) MarshalJSON() ([]byte, error) {
	if !o.set {
		return []byte("null"), nil
	}
	return []byte(strconv.Itoa(o.value)), nil
}

// UnmarshalJSON reads an integer, or null as unset.
func (o *OptionalInt) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*o = OptionalInt{}
		return nil
	}
	var v int
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*o = SomeInt(v)
	return nil
}
