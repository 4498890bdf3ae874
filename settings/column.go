package settings

import (
	"database/sql/driver"
	"encoding/json"

	"github.com/modelplane/modelplane"
)

// The settings are stored as JSON columns. Scan and Value let the store read and write them
// as they are, in a struct it scans a row into or as a query argument, without a copy of each
// type on the store's side.

// Value stores the settings as JSON.
func (s AutoscalingSettings) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the settings from JSON.
func (s *AutoscalingSettings) Scan(src any) error { return modelplane.ScanJSON(src, s) }

// Value stores the settings as JSON.
func (s PromotionSettings) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the settings from JSON.
func (s *PromotionSettings) Scan(src any) error { return modelplane.ScanJSON(src, s) }
