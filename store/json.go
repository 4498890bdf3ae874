package store

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
)

// JSONMap is a free-form JSON object column (labels, configs, details).
type JSONMap map[string]any

// Value stores the map as JSON; a nil map is stored as {}.
func (m JSONMap) Value() (driver.Value, error) {
	if m == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(m)
}

// Scan reads the map from JSON.
func (m *JSONMap) Scan(src any) error { return scanJSON(src, m) }

func scanJSON(src, dest any) error {
	switch v := src.(type) {
	case []byte:
		return json.Unmarshal(v, dest)
	case string:
		return json.Unmarshal([]byte(v), dest)
	case nil:
		return nil
	}
	return fmt.Errorf("store: cannot read %T as JSON", src)
}
