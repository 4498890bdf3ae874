package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/blob"
)

// Blob store kinds for --blob-store.
const (
	blobStoreDir = "dir"
	blobStoreS3  = "s3"
)

// blobStoreConfig says where model packages are kept: a local directory (the default), or
// an S3-compatible bucket.
type blobStoreConfig struct {
	Kind string
	S3   blob.S3Config
}

// blobStoreFlags adds --blob-store and the --s3-* flags. Credentials come from the default
// AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role...)
// unless MODELPLANE_S3_ACCESS_KEY_ID names a key of modelplane's own.
func blobStoreFlags(cmd *cobra.Command, c *blobStoreConfig) {
	f := cmd.Flags()
	f.StringVar(&c.Kind, "blob-store", envString("MODELPLANE_BLOB_STORE", blobStoreDir), "where model packages are kept: dir (a local directory) or s3 (an S3-compatible bucket, --s3-*) (MODELPLANE_BLOB_STORE)")
	f.StringVar(&c.S3.Bucket, "s3-bucket", envString("MODELPLANE_S3_BUCKET", ""), "bucket of --blob-store s3 (MODELPLANE_S3_BUCKET)")
	f.StringVar(&c.S3.Endpoint, "s3-endpoint", envString("MODELPLANE_S3_ENDPOINT", ""), "URL of an S3-compatible server; empty is AWS. Clients and agents use presigned URLs of this endpoint, so it must be reachable from them (MODELPLANE_S3_ENDPOINT)")
	f.StringVar(&c.S3.Region, "s3-region", envString("MODELPLANE_S3_REGION", ""), "the bucket's region; empty takes AWS_REGION, else us-east-1 (MODELPLANE_S3_REGION)")
	f.BoolVar(&c.S3.PathStyle, "s3-path-style", envBool("MODELPLANE_S3_PATH_STYLE", false), "address the bucket in the URL's path rather than its host name, as most self-hosted servers want (MODELPLANE_S3_PATH_STYLE)")
	f.StringVar(&c.S3.Prefix, "s3-prefix", envString("MODELPLANE_S3_PREFIX", ""), "prefix of every key modelplane writes, e.g. modelplane/ (MODELPLANE_S3_PREFIX)")
	f.StringVar(&c.S3.AccessKeyID, "s3-access-key-id", envString("MODELPLANE_S3_ACCESS_KEY_ID", ""), "access key for the bucket; empty uses the default AWS chain (MODELPLANE_S3_ACCESS_KEY_ID)")
	c.S3.SecretAccessKey = envString("MODELPLANE_S3_SECRET_ACCESS_KEY", "")
}

// s3 is the bucket's configuration when the store is S3, else nil.
func (c blobStoreConfig) s3() (*blob.S3Config, error) {
	switch c.Kind {
	case blobStoreDir:
		return nil, nil
	case blobStoreS3:
		if c.S3.Bucket == "" {
			return nil, fmt.Errorf("--blob-store s3 needs --s3-bucket (MODELPLANE_S3_BUCKET)")
		}
		if c.S3.AccessKeyID != "" && c.S3.SecretAccessKey == "" {
			return nil, fmt.Errorf("--s3-access-key-id needs its secret in MODELPLANE_S3_SECRET_ACCESS_KEY")
		}
		cfg := c.S3
		return &cfg, nil
	}
	return nil, fmt.Errorf("--blob-store must be %s or %s, got %q", blobStoreDir, blobStoreS3, c.Kind)
}

// open opens the store. dir is --blob-dir: the blobs of a dir store, and with an S3 store
// the scratch space packages are unpacked in to be checked. maxArchive is the largest
// package the process takes (0 when it takes none).
func (c blobStoreConfig) open(ctx context.Context, dir string, maxArchive int64) (blob.Store, string, error) {
	s3cfg, err := c.s3()
	if err != nil {
		return nil, "", err
	}
	local, err := blob.NewDir(dir)
	if err != nil {
		return nil, "", fmt.Errorf("--blob-dir %s: %w", dir, err)
	}
	if s3cfg == nil {
		return local, local.TempDir(), nil
	}
	if maxArchive > blob.MaxS3Blob {
		return nil, "", fmt.Errorf("--max-archive-bytes %d is over the %d bytes an S3 store takes in one blob", maxArchive, int64(blob.MaxS3Blob))
	}
	s, err := blob.NewS3(ctx, *s3cfg)
	if err != nil {
		return nil, "", err
	}
	return s, filepath.Join(dir, "tmp"), nil
}
