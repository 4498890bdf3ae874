package store

import (
	"database/sql/driver"
	"encoding/json"

	"github.com/modelplane/modelplane"
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
func (m *JSONMap) Scan(src any) error { return modelplane.ScanJSON(src, m) }
