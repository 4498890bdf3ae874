package settings

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
)

// The settings are stored as JSON columns. Scan and Value let the store read and write them
// as they are, in a struct it scans a row into or as a query argument, without a copy of each
// type on the store's side.

// Value stores the settings as JSON.
func (s AutoscalingSettings) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the settings from JSON.
func (s *AutoscalingSettings) Scan(src any) error { return scanJSON(src, s) }

// Value stores the settings as JSON.
func (s PromotionSettings) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the settings from JSON.
func (s *PromotionSettings) Scan(src any) error { return scanJSON(src, s) }

// scanJSON decodes a JSON column's value, which the driver hands over as bytes or text; NULL
// leaves dest as it is.
func scanJSON(src, dest any) error {
	switch v := src.(type) {
	case []byte:
		return json.Unmarshal(v, dest)
	case string:
		return json.Unmarshal([]byte(v), dest)
	case nil:
		return nil
	}
	return fmt.Errorf("settings: cannot read %T as JSON", src)
}
