package apiv1

// QuotaFiguresV1 are a workspace's figures in the terms of its quotas: replicas run at once,
// GPUs their replicas hold at once, async requests queued or in progress, bytes of stored
// archives.
type QuotaFiguresV1 struct {
	Replicas      int   `json:"replicas"`
	GPUs          int   `json:"gpus"`
	AsyncRequests int   `json:"async_requests"`
	ArchiveBytes  int64 `json:"archive_bytes"`
}

// QuotasV1 answers GET /v1/quotas (modelplane's): the key's workspace's quotas (limits) and
// what it holds now (usage).
type QuotasV1 struct {
	TeamName string         `json:"team_name"`
	Limits   QuotaFiguresV1 `json:"limits"`
	Usage    QuotaFiguresV1 `json:"usage"`
}
