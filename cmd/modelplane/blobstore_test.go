package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/blob"
)

func TestBlobStoreFlags_RefuseWhatCannotWork(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown kind", []string{"--blob-store", "gcs"}, nil, `--blob-store must be dir or s3, got "gcs"`},
		{"s3 without a bucket", []string{"--blob-store", "s3"}, nil, "--blob-store s3 needs --s3-bucket"},
		{"a key without its secret", []string{"--blob-store", "s3", "--s3-bucket", "b", "--s3-access-key-id", "k"}, nil,
			"MODELPLANE_S3_SECRET_ACCESS_KEY"},
		{"archives over one copy", []string{"--blob-store", "s3", "--s3-bucket", "b"}, nil, "--max-archive-bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c blobStoreConfig
			cmd := &cobra.Command{}
			blobStoreFlags(cmd, &c)
			require.NoError(t, cmd.ParseFlags(tc.args))
			_, _, err := c.open(context.Background(), filepath.Join(t.TempDir(), "blobs"), blob.MaxS3Blob+1)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestBlobStoreFlags_DirIsTheDefault(t *testing.T) {
	var c blobStoreConfig
	cmd := &cobra.Command{}
	blobStoreFlags(cmd, &c)
	require.NoError(t, cmd.ParseFlags(nil))
	dir := filepath.Join(t.TempDir(), "blobs")
	s, scratch, err := c.open(context.Background(), dir, 1<<30)
	require.NoError(t, err)
	require.IsType(t, &blob.Dir{}, s)
	require.Equal(t, filepath.Join(dir, "tmp"), scratch)
}

func TestBlobStoreFlags_ReadTheEnvironment(t *testing.T) {
	t.Setenv("MODELPLANE_BLOB_STORE", "s3")
	t.Setenv("MODELPLANE_S3_BUCKET", "archives")
	t.Setenv("MODELPLANE_S3_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("MODELPLANE_S3_PATH_STYLE", "true")
	t.Setenv("MODELPLANE_S3_PREFIX", "mp/")
	t.Setenv("MODELPLANE_S3_ACCESS_KEY_ID", "id")
	t.Setenv("MODELPLANE_S3_SECRET_ACCESS_KEY", "secret")
	var c blobStoreConfig
	cmd := &cobra.Command{}
	blobStoreFlags(cmd, &c)
	require.NoError(t, cmd.ParseFlags([]string{"--s3-region", "eu-west-1"}))
	cfg, err := c.s3()
	require.NoError(t, err)
	require.Equal(t, blob.S3Config{Bucket: "archives", Endpoint: "http://127.0.0.1:1", Region: "eu-west-1", PathStyle: true,
		Prefix: "mp/", AccessKeyID: "id", SecretAccessKey: "secret"}, *cfg)
}
