package agent

import (
	"encoding/json"

	"github.com/labstack/echo/v4"
)

// jsonDecoder reads a request body strictly: an unknown field is a mistake worth a 400.
func jsonDecoder(c echo.Context) *json.Decoder {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	return dec
}
