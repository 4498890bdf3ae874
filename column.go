package modelplane

import (
	"encoding/json"
	"fmt"
)

// ScanJSON decodes the value of a JSON column as a database driver hands it over (bytes or
// text) into dest; NULL leaves dest as it is. Types stored as JSON use it in their Scan
// method, so the store reads them as they are, without a copy of each type on its side.
func ScanJSON(src, dest any) error {
	switch v := src.(type) {
	case []byte:
		return json.Unmarshal(v, dest)
	case string:
		return json.Unmarshal([]byte(v), dest)
	case nil:
		return nil
	}
	return fmt.Errorf("cannot read %T as JSON", src)
}
