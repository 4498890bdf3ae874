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

// UnmarshalJSON reads the settings over the defaults of the fields added since the first
// release (rolling_deploy_config, shadow_min_copies), so a row or payload written before them reads as valid
// settings.
func (s *PromotionSettings) UnmarshalJSON(b []byte) error {
	type plain PromotionSettings
	p := plain{RollingDeployConfig: DefaultRollingDeployConfig(), ShadowMinCopies: DefaultShadowMinCopies}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*s = PromotionSettings(p)
	return nil
}

// Value stores the schedules as JSON.
func (s AutoscalingSchedules) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the schedules from JSON.
func (s *AutoscalingSchedules) Scan(src any) error {
	*s = AutoscalingSchedules{}
	return modelplane.ScanJSON(src, s)
}
