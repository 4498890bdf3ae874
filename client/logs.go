package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/modelplane/modelplane/apiv1"
)

// LogsQuery selects log lines: those of Deployment (an ID or alias) or else of Environment,
// stamped in [Start, End) (zero: the API's defaults, the last 30 minutes), in Direction, at
// most Limit (0: the API's 500), at MinLevel or above, of the replicas whose ID starts with
// Replica.
type LogsQuery struct {
	Deployment  string
	Environment string
	Start, End  time.Time
	Direction   apiv1.SortOrderV1
	Limit       int
	MinLevel    apiv1.LogLevelV1
	Replica     string
}

// Logs answers the model's log lines q selects, and the replicas whose lines could not be
// read.
func (c *Client) Logs(ctx context.Context, modelID string, q LogsQuery) (apiv1.GetLogsResponseV1, error) {
	var out apiv1.GetLogsResponseV1
	segments := []string{"v1", "models", modelID, "environments", q.Environment, "logs"}
	if q.Deployment != "" {
		segments = []string{"v1", "models", modelID, "deployments", q.Deployment, "logs"}
	}
	p, err := path(segments...)
	if err != nil {
		return out, err
	}
	v := url.Values{}
	if !q.Start.IsZero() {
		v.Set("start_epoch_millis", strconv.FormatInt(q.Start.UnixMilli(), 10))
	}
	if !q.End.IsZero() {
		v.Set("end_epoch_millis", strconv.FormatInt(q.End.UnixMilli(), 10))
	}
	if q.Direction != "" {
		v.Set("direction", string(q.Direction))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.MinLevel != "" {
		v.Set("min_level", string(q.MinLevel))
	}
	if q.Replica != "" {
		v.Set("replica", q.Replica)
	}
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	err = c.do(ctx, http.MethodGet, p, nil, "", &out)
	out.Logs, out.Unavailable = nonNil(out.Logs), nonNil(out.Unavailable)
	return out, err
}

// logKey tells a line from every other: a replica's lines never share a stamp, and a build's
// lines are a nanosecond apart.
type logKey struct {
	replica, timestamp, message string
}

func keyOf(l apiv1.LogV1) logKey {
	k := logKey{timestamp: l.Timestamp, message: l.Message}
	if l.Replica != nil {
		k.replica = *l.Replica
	}
	return k
}

// maxFollowWindow keeps a follow's window within the API's 7 days.
const maxFollowWindow = 7*24*time.Hour - time.Minute

// FollowLogs asks for the lines of q every interval, from the time of the last line it
// passed on (a window starts at a whole millisecond, so the lines of that millisecond come
// again and are recognised), and passes each new line to emit once, oldest first, until ctx
// is done; the lines of printed, already shown, are not new. Each replica that cannot be read
// is passed to unavailable when it first is.
func (c *Client) FollowLogs(ctx context.Context, modelID string, q LogsQuery, interval time.Duration, printed []apiv1.LogV1,
	emit func(apiv1.LogV1), unavailable func(apiv1.UnavailableLogsV1)) error {
	q.Direction, q.End = apiv1.SortAsc, time.Time{}
	if q.Limit == 0 {
		q.Limit = 1000
	}
	seen := map[logKey]bool{}
	for _, l := range printed {
		seen[keyOf(l)] = true
	}
	told := map[apiv1.UnavailableLogsV1]bool{}
	if n := len(printed); n > 0 {
		if ns, err := strconv.ParseInt(printed[n-1].Timestamp, 10, 64); err == nil {
			q.Start = time.Unix(0, ns).Truncate(time.Millisecond)
		}
	}
	for {
		if floor := time.Now().Add(-maxFollowWindow); q.Start.Before(floor) {
			q.Start = floor
		}
		out, err := c.Logs(ctx, modelID, q)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		for _, u := range out.Unavailable {
			if !told[u] {
				told[u] = true
				unavailable(u)
			}
		}
		for _, l := range out.Logs {
			k := keyOf(l)
			if seen[k] {
				continue
			}
			seen[k] = true
			emit(l)
			if ns, err := strconv.ParseInt(l.Timestamp, 10, 64); err == nil {
				if t := time.Unix(0, ns).Truncate(time.Millisecond); t.After(q.Start) {
					q.Start = t
				}
			}
		}
		// Only the lines at or after the window's start can come again.
		for k := range seen {
			if ns, err := strconv.ParseInt(k.timestamp, 10, 64); err == nil && ns < q.Start.UnixNano() {
				delete(seen, k)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
