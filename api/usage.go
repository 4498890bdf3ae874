package api

import (
	"encoding/csv"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

const (
	// usageDefaultRange is how far back GET /v1/usage looks when start is not sent.
	usageDefaultRange = 24 * time.Hour
	// usageMaxRange is the longest range one GET /v1/usage answers: 31 days of hourly rows.
	usageMaxRange = 31 * 24 * time.Hour
)

// usageGroupings maps the wire's group_by to the store's.
var usageGroupings = map[apiv1.UsageGroupBy]store.UsageGrouping{
	apiv1.UsageByModel:      store.UsageByModel,
	apiv1.UsageByDeployment: store.UsageByDeployment,
	apiv1.UsageByGPUType:    store.UsageByGPUType,
}

// getUsage answers GET /v1/usage: the key's workspace's replica-seconds and GPU-seconds in
// [start, end) by hour and group_by, as JSON or CSV. Any key of the workspace may read it.
func (s *Server) getUsage(c echo.Context) error {
	groupBy, err := queryEnum(c, "group_by", apiv1.UsageByDeployment, apiv1.UsageGroupBys())
	if err != nil {
		return err
	}
	format, err := queryEnum(c, "format", apiv1.UsageJSON, apiv1.UsageFormats())
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	end, err := queryRFC3339(c, "end", now)
	if err != nil {
		return err
	}
	start, err := queryRFC3339(c, "start", end.Add(-usageDefaultRange))
	if err != nil {
		return err
	}
	if !start.Before(end) {
		return Errorf(http.StatusBadRequest, "start: must be before end (%s), not %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	if end.Sub(start) > usageMaxRange {
		return Errorf(http.StatusBadRequest, "start, end: the range is %s; at most 31 days (744h) are answered at once", end.Sub(start))
	}
	rows, err := store.UsageReport(c.Request().Context(), s.deps.DB, store.UsageQuery{
		WorkspaceID: principal(c).WorkspaceID, Start: start, End: end, GroupBy: usageGroupings[groupBy]})
	if err != nil {
		return err
	}
	out := apiv1.UsageV1{Start: start, End: end, GroupBy: groupBy, Rows: make([]apiv1.UsageRowV1, 0, len(rows))}
	for _, r := range rows {
		out.Rows = append(out.Rows, apiv1.UsageRowV1{Hour: r.Hour, ModelID: r.ModelID, ModelName: r.ModelName,
			DeploymentID: r.DeploymentID, DeploymentName: r.DeploymentName, GPUType: r.GPUType, MIGProfile: r.MIGProfile,
			ReplicaSeconds: r.ReplicaSeconds, GPUSeconds: r.GPUSeconds})
		out.Totals.ReplicaSeconds += r.ReplicaSeconds
		out.Totals.GPUSeconds += r.GPUSeconds
	}
	if format == apiv1.UsageCSV {
		return usageCSV(c, out.Rows)
	}
	return c.JSON(http.StatusOK, out)
}

// usageCSV writes rows as CSV: a header row, then one line per row.
func usageCSV(c echo.Context, rows []apiv1.UsageRowV1) error {
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	res.WriteHeader(http.StatusOK)
	w := csv.NewWriter(res)
	if err := w.Write(apiv1.UsageCSVHeader()); err != nil {
		return err
	}
	for _, r := range rows {
		if err := w.Write(r.CSV()); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}
