package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config says which bucket an S3 store keeps its blobs in and how to reach it.
type S3Config struct {
	Bucket string
	// Endpoint is the store's URL for an S3-compatible server; empty is AWS's own.
	Endpoint string
	// Region is the bucket's region; empty takes the default chain's (AWS_REGION), then
	// us-east-1.
	Region string
	// PathStyle addresses the bucket in the path (endpoint/bucket/key) rather than the host
	// name, as most self-hosted servers want.
	PathStyle bool
	// Prefix comes before every key the store writes, so one bucket can hold other things.
	Prefix string
	// AccessKeyID and SecretAccessKey are static credentials; when empty, the default AWS
	// chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, instance roles...) supplies them.
	AccessKeyID, SecretAccessKey, SessionToken string
}

// MaxS3Blob is the largest blob an S3 store takes: one CopyObject moves an upload to its
// digest, and S3 copies at most 5 GiB in one request.
const MaxS3Blob = 5 << 30

// s3PartSize is how much of a Put is sent in one part; a Put no longer than this is one
// PutObject.
const s3PartSize = 16 << 20

// S3 is a Store in an S3-compatible bucket: blobs at <prefix>sha256/<hex>, Puts in progress
// at <prefix>tmp/, and archives clients upload with a presigned URL at <prefix>uploads/.
type S3 struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	prefix  string
}

// NewS3 returns a store in cfg's bucket, after checking that the bucket answers.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: a bucket is required")
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Checksums only when the operation needs one: S3-compatible servers do not all
		// understand the newer trailing checksums.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s := &S3{client: client, presign: s3.NewPresignClient(client), bucket: cfg.Bucket, prefix: cfg.Prefix}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return nil, fmt.Errorf("s3: bucket %q: %w", cfg.Bucket, err)
	}
	return s, nil
}

// Bucket is the bucket the store writes to.
func (s *S3) Bucket() string { return s.bucket }

func (s *S3) key(digest string) (string, error) {
	m := digestPattern.FindStringSubmatch(digest)
	if m == nil {
		return "", fmt.Errorf("%w: %q is not a sha256 digest", ErrNotFound, digest)
	}
	return s.prefix + "sha256/" + m[1], nil
}

// uploadKey is where a presigned upload named name goes; name is one the API made.
func (s *S3) uploadKey(name string) string { return s.prefix + "uploads/" + name }

// Put implements Store. The content goes to a temporary key while it is hashed and counted,
// then is copied to its digest's key and the temporary one removed, so nothing half-written
// is ever under a digest. Content that is there already is copied again all the same, which
// makes it new for Older, as Dir's Put does.
func (s *S3) Put(ctx context.Context, r io.Reader, limit int64) (string, int64, bool, error) {
	limit = min(limit, MaxS3Blob)
	tmp := s.prefix + "tmp/" + strings.ToLower(rand.Text())
	h := sha256.New()
	n, err := s.upload(ctx, tmp, io.TeeReader(io.LimitReader(readerCtx{ctx, r}, limit+1), h), limit)
	if err != nil {
		return "", 0, false, err
	}
	defer s.deleteKey(context.WithoutCancel(ctx), tmp)
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	final, _ := s.key(digest)
	_, err = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &final})
	created := isNotFound(err)
	if err != nil && !created {
		return "", 0, false, fmt.Errorf("s3: %w", err)
	}
	if _, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: &s.bucket, Key: &final, CopySource: aws.String(copySource(s.bucket, tmp)),
	}); err != nil {
		return "", 0, false, fmt.Errorf("s3: storing %s: %w", digest, err)
	}
	return digest, n, created, nil
}

// upload writes what r yields to key: one PutObject when it fits in a part, a multipart
// upload otherwise. More than limit bytes is ErrTooLarge and leaves nothing.
func (s *S3) upload(ctx context.Context, key string, r io.Reader, limit int64) (int64, error) {
	buf := make([]byte, s3PartSize)
	first, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if int64(first) > limit {
		return 0, ErrTooLarge
	}
	if first < len(buf) {
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(buf[:first]), ContentLength: aws.Int64(int64(first)),
		})
		if err != nil {
			return 0, fmt.Errorf("s3: %w", err)
		}
		return int64(first), nil
	}
	mu, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return 0, fmt.Errorf("s3: %w", err)
	}
	n, parts, err := s.uploadParts(ctx, key, mu.UploadId, r, buf, first, limit)
	if err == nil {
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &s.bucket, Key: &key, UploadId: mu.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
	}
	if err != nil {
		_, _ = s.client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
			Bucket: &s.bucket, Key: &key, UploadId: mu.UploadId,
		})
		return 0, err
	}
	return n, nil
}

// uploadParts sends buf[:filled] and the rest of r as the parts of a multipart upload.
func (s *S3) uploadParts(ctx context.Context, key string, id *string, r io.Reader, buf []byte, filled int, limit int64) (int64, []types.CompletedPart, error) {
	var (
		parts []types.CompletedPart
		n     int64
	)
	for num := int32(1); filled > 0; num++ {
		n += int64(filled)
		if n > limit {
			return 0, nil, ErrTooLarge
		}
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &key, UploadId: id, PartNumber: aws.Int32(num),
			Body: bytes.NewReader(buf[:filled]), ContentLength: aws.Int64(int64(filled)),
		})
		if err != nil {
			return 0, nil, fmt.Errorf("s3: %w", err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		filled, err = io.ReadFull(r, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return 0, nil, err
		}
	}
	return n, parts, nil
}

// Open implements Store.
func (s *S3) Open(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	key, err := s.key(digest)
	if err != nil {
		return nil, 0, err
	}
	return s.open(ctx, key)
}

func (s *S3) open(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if isNotFound(err) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("s3: %w", err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, digest string) error {
	key, err := s.key(digest)
	if err != nil {
		return nil
	}
	return s.deleteKey(ctx, key)
}

func (s *S3) deleteKey(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3: %w", err)
	}
	return nil
}

// Older implements Store: the blobs whose object was last modified before t.
func (s *S3) Older(ctx context.Context, t time.Time) ([]string, error) {
	var out []string
	err := s.list(ctx, s.prefix+"sha256/", func(o types.Object) {
		digest := "sha256:" + strings.TrimPrefix(aws.ToString(o.Key), s.prefix+"sha256/")
		if digestPattern.MatchString(digest) && aws.ToTime(o.LastModified).Before(t) {
			out = append(out, digest)
		}
	})
	return out, err
}

func (s *S3) list(ctx context.Context, prefix string, each func(types.Object)) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3: %w", err)
		}
		for _, o := range page.Contents {
			each(o)
		}
	}
	return nil
}

// DeleteIfOlder implements Store. Between the check and the removal a Put of the same
// content may store it again; as with Dir, the window is one round trip, and the sweep that
// calls this only looks at blobs nothing has referred to for hours.
func (s *S3) DeleteIfOlder(ctx context.Context, digest string, t time.Time) (bool, error) {
	key, err := s.key(digest)
	if err != nil {
		return false, nil
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("s3: %w", err)
	}
	if !aws.ToTime(head.LastModified).Before(t) {
		return false, nil
	}
	if err := s.deleteKey(ctx, key); err != nil {
		return false, err
	}
	return true, nil
}

// PresignUpload returns a URL that takes one PUT of an object named name, without
// credentials, until expires has passed. The object is read back with OpenUpload.
func (s *S3) PresignUpload(ctx context.Context, name string, expires time.Duration) (string, error) {
	key := s.uploadKey(name)
	req, err := s.presign.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key},
		s3.WithPresignExpires(expires))
	if err != nil {
		return "", fmt.Errorf("s3: %w", err)
	}
	return req.URL, nil
}

// OpenUpload reads what was PUT to the presigned URL for name; ErrNotFound when nothing was.
func (s *S3) OpenUpload(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	return s.open(ctx, s.uploadKey(name))
}

// DeleteUpload removes what was PUT for name; nothing there is not an error.
func (s *S3) DeleteUpload(ctx context.Context, name string) error {
	return s.deleteKey(ctx, s.uploadKey(name))
}

// DeleteUploadsOlder removes the presigned uploads last written before t, which nothing took
// (a create reads an upload and removes it), and says how many went.
func (s *S3) DeleteUploadsOlder(ctx context.Context, t time.Time) (int, error) {
	var keys []string
	if err := s.list(ctx, s.prefix+"uploads/", func(o types.Object) {
		if aws.ToTime(o.LastModified).Before(t) {
			keys = append(keys, aws.ToString(o.Key))
		}
	}); err != nil {
		return 0, err
	}
	for i, k := range keys {
		if err := s.deleteKey(ctx, k); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

// PresignDownload returns a URL that reads the blob without credentials until expires has
// passed.
func (s *S3) PresignDownload(ctx context.Context, digest string, expires time.Duration) (string, error) {
	key, err := s.key(digest)
	if err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key},
		s3.WithPresignExpires(expires))
	if err != nil {
		return "", fmt.Errorf("s3: %w", err)
	}
	return req.URL, nil
}

// copySource is CopyObject's bucket/key, URL-encoded as S3 wants it, slashes kept.
func copySource(bucket, key string) string {
	parts := strings.Split(bucket+"/"+key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// isNotFound says whether err is S3's answer for a missing object.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchKey"
}

var _ Uploads = (*S3)(nil)
