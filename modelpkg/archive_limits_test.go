package modelpkg_test

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
)

// zeros yields zero bytes for ever.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// writeArchive streams a gzip'd tar into a file under t.TempDir: config.yaml, then whatever
// more writes, so that archives of gigabytes are never held in memory. It returns the path
// and the compressed size.
func writeArchive(t *testing.T, more func(tw *tar.Writer)) (string, int64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pkg.tar.gz")
	f, err := os.Create(p)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	require.NoError(t, err)
	tw := tar.NewWriter(gz)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "config.yaml", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(goodConfig)), Format: tar.FormatPAX}))
	_, err = tw.Write([]byte(goodConfig))
	require.NoError(t, err)
	more(tw)
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	fi, err := f.Stat()
	require.NoError(t, err)
	return p, fi.Size()
}

func writeFile(t *testing.T, tw *tar.Writer, name string, size int64) {
	t.Helper()
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, Format: tar.FormatPAX}))
	_, err := io.CopyN(tw, zeros{}, size)
	require.NoError(t, err)
}

func extractFile(t *testing.T, archivePath, dest string, lim modelpkg.Limits) error {
	t.Helper()
	f, err := os.Open(archivePath)
	require.NoError(t, err)
	defer f.Close()
	_, err = modelpkg.ExtractLimited(f, "", dest, lim)
	return err
}

// deepName is a file n directories deep: d/d/.../d/f.
func deepName(n int) string { return strings.Repeat("d/", n) + "f" }

func TestExtract_RefusesADeepTreeQuicklyNamingTheDepth(t *testing.T) {
	s := newSandbox(t)
	p, size := writeArchive(t, func(tw *tar.Writer) { writeFile(t, tw, deepName(3000), 1) })
	t.Logf("archive of one file 3000 directories deep: %d bytes", size)

	start := time.Now()
	err := extractFile(t, p, s.dest, modelpkg.Limits{})
	took := time.Since(start)

	require.ErrorIs(t, err, modelpkg.ErrUnsafePath)
	assert.Contains(t, err.Error(), "3001 path components")
	assert.Contains(t, err.Error(), fmt.Sprintf("limit of %d", modelpkg.MaxPathDepth))
	assert.Less(t, took, 500*time.Millisecond, "refusing a deep entry must not walk it")
	s.assertUntouched(t)
}

func TestExtract_RefusesALongPathAndALongName(t *testing.T) {
	longPath := strings.Repeat(strings.Repeat("p", 100)+"/", 11) + "f" // 1112 bytes, 12 components
	longName := "dir/" + strings.Repeat("n", 256)
	tests := []struct {
		name, entry, want string
	}{
		{"path over the limit", longPath, fmt.Sprintf("%d bytes, over the limit of %d", len(longPath), modelpkg.MaxPathBytes)},
		{"name over the limit", longName, fmt.Sprintf("a name of 256 bytes, over the limit of %d", modelpkg.MaxNameBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			p, _ := writeArchive(t, func(tw *tar.Writer) { writeFile(t, tw, tt.entry, 1) })
			err := extractFile(t, p, s.dest, modelpkg.Limits{})
			require.ErrorIs(t, err, modelpkg.ErrUnsafePath)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), tt.entry[:50], "the entry is named")
			s.assertUntouched(t)
		})
	}
}

func TestExtract_SymlinkTargetOverThePathLimitIsRefused(t *testing.T) {
	s := newSandbox(t)
	target := strings.Repeat("./", modelpkg.MaxPathBytes/2+1) + "config.yaml"
	data, sum := archive(t, file("config.yaml", goodConfig), symlink("link", target))
	_, err := modelpkg.ExtractLimited(strings.NewReader(string(data)), sum, s.dest, modelpkg.Limits{})
	require.ErrorIs(t, err, modelpkg.ErrUnsafePath)
	assert.Contains(t, err.Error(), "symlink link")
	s.assertUntouched(t)
}

func TestExtract_DeepestAllowedTreeIsAccepted(t *testing.T) {
	s := newSandbox(t)
	name := deepName(modelpkg.MaxPathDepth - 1)
	p, _ := writeArchive(t, func(tw *tar.Writer) { writeFile(t, tw, name, 3) })
	require.NoError(t, extractFile(t, p, s.dest, modelpkg.Limits{}))
	fi, err := os.Stat(filepath.Join(s.dest, filepath.FromSlash(name)))
	require.NoError(t, err)
	assert.EqualValues(t, 3, fi.Size())
}

// bestExtractTime is the shortest of three extractions of the archive at p.
func bestExtractTime(t *testing.T, p string) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	for range 3 {
		dest := filepath.Join(t.TempDir(), "pkg")
		start := time.Now()
		require.NoError(t, extractFile(t, p, dest, modelpkg.Limits{}))
		best = min(best, time.Since(start))
	}
	return best
}

func TestExtract_ManyFilesUnderADeepTreeTakeTimeLinearInTheirNumber(t *testing.T) {
	// Files spread over the directories of a tree near the depth limit: each entry costs the
	// same, wherever it lands, so four times the files take about four times as long.
	build := func(files int) string {
		p, _ := writeArchive(t, func(tw *tar.Writer) {
			for i := range files {
				depth := modelpkg.MaxPathDepth - 1 - i%8
				writeFile(t, tw, fmt.Sprintf("%sf%d", strings.Repeat("d/", depth), i), 1)
			}
		})
		return p
	}
	small, large := build(500), build(2000)
	bestExtractTime(t, small) // warm up
	t1, t4 := bestExtractTime(t, small), bestExtractTime(t, large)
	t.Logf("500 files: %v, 2000 files: %v (%.1fx)", t1, t4, float64(t4)/float64(t1))
	assert.Less(t, t4, 10*t1, "4x the files must take about 4x the time, not 16x")
}

func TestExtract_RefusesADecompressionBombForItsRatio(t *testing.T) {
	s := newSandbox(t)
	const unpacked = 256 << 20
	p, size := writeArchive(t, func(tw *tar.Writer) { writeFile(t, tw, "weights.bin", unpacked) })
	t.Logf("bomb: %d bytes unpacking to %d", size, unpacked)

	lim := modelpkg.Limits{MaxUnpackedBytes: 1 << 40}
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	probe := &peakSize{dir: s.dest}
	_, err = modelpkg.ExtractLimited(io.TeeReader(f, probe), "", s.dest, lim)

	require.ErrorIs(t, err, modelpkg.ErrTooLarge)
	assert.Contains(t, err.Error(), fmt.Sprintf("%d:1", modelpkg.DefaultMaxRatio), "the ratio limit is named")
	assert.Contains(t, err.Error(), "weights.bin")
	assert.LessOrEqual(t, probe.peak, int64(modelpkg.DefaultRatioFloor), "nothing past the limit is written")
	assert.Greater(t, probe.peak, int64(0), "the probe saw the file being written")
	s.assertUntouched(t)
}

func TestExtract_SmallHighlyCompressiblePackagesAreAccepted(t *testing.T) {
	s := newSandbox(t)
	// 32 MiB of zeros is far past 200:1, but under the floor below which the ratio is not
	// checked.
	p, _ := writeArchive(t, func(tw *tar.Writer) { writeFile(t, tw, "zeros.bin", 32<<20) })
	require.NoError(t, extractFile(t, p, s.dest, modelpkg.Limits{}))
}

func TestExtract_RefusesAnArchiveOverTheTotalLimitBeforeWritingIt(t *testing.T) {
	s := newSandbox(t)
	p, _ := writeArchive(t, func(tw *tar.Writer) {
		writeFile(t, tw, "a.bin", 600<<10)
		writeFile(t, tw, "b.bin", 600<<10)
	})
	err := extractFile(t, p, s.dest, modelpkg.Limits{MaxUnpackedBytes: 1 << 20})
	require.ErrorIs(t, err, modelpkg.ErrTooLarge)
	assert.Contains(t, err.Error(), "b.bin")
	assert.Contains(t, err.Error(), "limit of 1048576 bytes")
	s.assertUntouched(t)
}

// peakSize records the most bytes found under dir each time the archive is read from, which
// is as often as the extraction writes.
type peakSize struct {
	dir  string
	peak int64
}

func (p *peakSize) Write(b []byte) (int, error) {
	var total int64
	_ = filepath.WalkDir(p.dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	p.peak = max(p.peak, total)
	return len(b), nil
}
