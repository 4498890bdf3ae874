package agent

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
)

// jsonDecoder reads a request body strictly: an unknown field is a mistake worth a 400.
func jsonDecoder(c echo.Context) *json.Decoder {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	return dec
}

// decodeBody reads the request body into v: a body over the route's limit keeps its 413,
// anything else that does not decode is a 400.
func decodeBody(c echo.Context, v any) error {
	if err := jsonDecoder(c).Decode(v); err != nil {
		var ee *echo.HTTPError
		if errors.As(err, &ee) {
			return err
		}
		return errorf(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	return nil
}
