package apiv1

// ArchiveV1 answers POST /v1/archives: the package's content address and size.
type ArchiveV1 struct {
	ID   string `json:"id"` // sha256:<hex>
	Size int64  `json:"size"`
}
