package httpserve

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Probe GETs url and succeeds on a 2xx answer. It is the health check of images that have
// no shell or curl (`modelplane probe URL` in the Compose file's healthchecks).
func Probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s: %s", url, resp.Status, body)
	}
	return nil
}
