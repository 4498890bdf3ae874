package devstack

import (
	"context"
	"path/filepath"

	"github.com/modelplane/modelplane/blob"
)

// openBlobs opens where the stack keeps model packages: <DataDir>/blobs, or the bucket
// Options.S3 names, with the scratch space packages are checked in under <DataDir>/blobs.
func openBlobs(ctx context.Context, opts Options) (blob.Store, string, error) {
	local, err := blob.NewDir(filepath.Join(opts.DataDir, "blobs"))
	if err != nil || opts.S3 == nil {
		return local, local.TempDir(), err
	}
	s, err := blob.NewS3(ctx, *opts.S3)
	return s, local.TempDir(), err
}
