// Package blob stores model archives by content: a blob's name is the SHA-256 of its bytes,
// so storing the same archive twice keeps one copy and a name always means the same bytes.
//
// Dir keeps blobs in a directory, S3 in an S3-compatible bucket; both are a Store.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// ErrNotFound means no blob has that digest.
var ErrNotFound = errors.New("blob not found")

// ErrTooLarge means the content was longer than the limit given to Put.
var ErrTooLarge = errors.New("blob larger than the limit")

// Store keeps blobs by digest ("sha256:<hex>").
type Store interface {
	// Put stores what r yields, up to limit bytes (ErrTooLarge past it), and returns its
	// digest and size. created is false when the blob was already there.
	Put(ctx context.Context, r io.Reader, limit int64) (digest string, size int64, created bool, err error)
	// Open reads a blob.
	Open(ctx context.Context, digest string) (io.ReadCloser, int64, error)
	// Delete removes a blob; a missing one is not an error.
	Delete(ctx context.Context, digest string) error
	// Older lists the digests of the blobs last stored before t. Put of content that is
	// there already counts as storing it again.
	Older(ctx context.Context, t time.Time) ([]string, error)
	// DeleteIfOlder removes a blob when it was last stored before t, and says whether it did;
	// a blob stored again since Older listed it stays.
	DeleteIfOlder(ctx context.Context, digest string, t time.Time) (bool, error)
}

// Uploads is what a store offers when clients may upload to it directly, with a presigned
// URL and no credentials (S3): the API then reads the upload back, checks it and stores it
// by digest. A Dir has none; clients upload to it through the API.
type Uploads interface {
	// PresignUpload returns a URL that takes one PUT of the upload named name until expires
	// has passed.
	PresignUpload(ctx context.Context, name string, expires time.Duration) (string, error)
	// OpenUpload reads what was PUT for name: ErrNotFound when nothing was.
	OpenUpload(ctx context.Context, name string) (io.ReadCloser, int64, error)
	// DeleteUpload removes what was PUT for name; nothing there is not an error.
	DeleteUpload(ctx context.Context, name string) error
	// DeleteUploadsOlder removes the uploads last written before t and says how many went.
	DeleteUploadsOlder(ctx context.Context, t time.Time) (int, error)
}

var digestPattern = regexp.MustCompile(`^sha256:([0-9a-f]{64})$`)

// Dir is a Store in a local directory: blobs at <root>/sha256/<hex>, uploads in progress at
// <root>/tmp.
type Dir struct {
	root string
}

// NewDir returns a store rooted at root, creating it.
func NewDir(root string) (*Dir, error) {
	for _, d := range []string{"sha256", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			return nil, err
		}
	}
	return &Dir{root: root}, nil
}

// TempDir is a scratch directory on the store's file system, for work on uploads.
func (d *Dir) TempDir() string { return filepath.Join(d.root, "tmp") }

func (d *Dir) path(digest string) (string, error) {
	m := digestPattern.FindStringSubmatch(digest)
	if m == nil {
		return "", fmt.Errorf("%w: %q is not a sha256 digest", ErrNotFound, digest)
	}
	return filepath.Join(d.root, "sha256", m[1]), nil
}

// Put implements Store. The content is written to a temporary file and renamed into place
// once its digest is known, so a reader never sees a partial blob.
func (d *Dir) Put(ctx context.Context, r io.Reader, limit int64) (string, int64, bool, error) {
	tmp, err := os.CreateTemp(d.TempDir(), "upload-*")
	if err != nil {
		return "", 0, false, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(readerCtx{ctx, r}, limit+1))
	if err == nil && n > limit {
		err = ErrTooLarge
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, false, err
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	final, _ := d.path(digest)
	if _, err := os.Stat(final); err == nil {
		// Stored again: a sweep of old unreferenced blobs must wait for this upload's row.
		now := time.Now()
		if err := os.Chtimes(final, now, now); err != nil {
			return "", 0, false, err
		}
		return digest, n, false, nil
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", 0, false, err
	}
	return digest, n, true, nil
}

// Open implements Store.
func (d *Dir) Open(_ context.Context, digest string) (io.ReadCloser, int64, error) {
	p, err := d.path(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Delete implements Store.
func (d *Dir) Delete(_ context.Context, digest string) error {
	p, err := d.path(digest)
	if err != nil {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Older implements Store: the blobs whose file was last modified before t.
func (d *Dir) Older(ctx context.Context, t time.Time) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(d.root, "sha256"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		digest := "sha256:" + e.Name()
		if !e.Type().IsRegular() || !digestPattern.MatchString(digest) {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if info.ModTime().Before(t) {
			out = append(out, digest)
		}
	}
	return out, nil
}

// DeleteIfOlder implements Store.
func (d *Dir) DeleteIfOlder(_ context.Context, digest string, t time.Time) (bool, error) {
	p, err := d.path(digest)
	if err != nil {
		return false, nil
	}
	info, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !info.ModTime().Before(t) {
		return false, nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// readerCtx stops a long upload when its request is cancelled.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
