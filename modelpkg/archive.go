package modelpkg

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Errors that Extract wraps; match them with errors.Is.
var (
	// ErrChecksum means the archive's bytes are not the ones asked for: corrupted or swapped.
	ErrChecksum = errors.New("model package checksum mismatch")
	// ErrUnsafePath means an entry would write outside the destination, or is a kind of
	// file a package must not carry (hard link, device, fifo, a link leading outside).
	ErrUnsafePath = errors.New("unsafe path in model package")
	// ErrNoConfig means the package has no config.yaml at its root.
	ErrNoConfig = errors.New("model package has no " + ConfigFile + " at its root")
	// ErrTooLarge means the package unpacks to more than its Limits allow (in total, or
	// for the bytes it was compressed to), or has more than MaxEntries entries.
	ErrTooLarge = errors.New("model package too large")
)

// Limits that stop an archive from filling the disk (a gzip "bomb" compresses gigabytes of
// zeros into kilobytes). Variables so that tests and operators with bigger weights can
// change them.
var (
	// MaxUnpackedBytes bounds the total size of the files in one package when the Limits
	// given to ExtractLimited name none (and always for Extract).
	MaxUnpackedBytes int64 = 64 << 30
	// MaxEntries bounds the number of entries (files, directories, links) in one package.
	MaxEntries = 1_000_000
)

// Limits on the paths in a package. Each level of a path costs every later operation on it,
// so a path thousands of directories deep makes unpacking slow out of all proportion to the
// archive's size; no model needs one.
const (
	// MaxPathDepth bounds the components of an entry's path ("a/b/c" has 3).
	MaxPathDepth = 64
	// MaxPathBytes bounds the length of an entry's path and of a symlink's target.
	MaxPathBytes = 1024
	// MaxNameBytes bounds one component of a path, as most file systems do.
	MaxNameBytes = 255
)

// Defaults for the expansion ratio of Limits.
const (
	// DefaultMaxRatio is the most bytes a package may unpack to per compressed byte: model
	// weights barely compress, text compresses about 10:1, and a bomb of zeros about 1000:1.
	DefaultMaxRatio = 200
	// DefaultRatioFloor is how much any package may unpack to whatever its ratio, so that a
	// small package of very compressible files is never refused.
	DefaultRatioFloor = 64 << 20
)

// Limits bound what ExtractLimited writes. The zero value means the defaults.
type Limits struct {
	// MaxUnpackedBytes bounds the total size of the package's files, as their headers
	// declare them, checked before each file is written; 0 means MaxUnpackedBytes.
	MaxUnpackedBytes int64
	// MaxRatio bounds the bytes unpacked per compressed byte read so far, checked as each
	// file is written, once RatioFloor bytes are unpacked; 0 means DefaultMaxRatio and a
	// negative value no limit.
	MaxRatio int64
	// RatioFloor is how many bytes may be unpacked before MaxRatio applies; 0 means
	// DefaultRatioFloor.
	RatioFloor int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxUnpackedBytes <= 0 {
		l.MaxUnpackedBytes = MaxUnpackedBytes
	}
	if l.MaxRatio == 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	if l.RatioFloor <= 0 {
		l.RatioFloor = DefaultRatioFloor
	}
	return l
}

// maxSymlinkHops bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinkHops = 40

// Extract unpacks the gzip'd tar read from r into dest and returns the package's parsed
// config.yaml.
//
// When wantSHA256 is not empty (hex, "sha256:" prefix allowed), the SHA-256 of the
// compressed bytes must equal it; the whole stream is read and checked before the package
// counts as valid, and a mismatch is an error wrapping ErrChecksum.
//
// dest must be missing or an empty directory. On any error, everything Extract wrote is
// removed again (dest too, if Extract created it), so a failed extraction never leaves a
// half-written package behind.
//
// config.yaml must be at the root of the archive ("config.yaml" or "./config.yaml"); an
// archive whose files all sit under one top-level directory is refused with ErrNoConfig
// rather than guessed at. Entries that would land outside dest, hard links, devices,
// fifos and symlinks that resolve outside dest are refused with ErrUnsafePath, and no entry
// is ever written through a symlink that an earlier entry created. Permission bits are
// kept (setuid, setgid and sticky bits are dropped), except that the owner can always read
// and write files and enter directories, so that the agent can patch and delete them.
//
// Extract applies the default Limits, and the path limits (MaxPathDepth, MaxPathBytes,
// MaxNameBytes); see ExtractLimited.
func Extract(r io.Reader, wantSHA256 string, dest string) (cfg Config, err error) {
	return ExtractLimited(r, wantSHA256, dest, Limits{})
}

// ExtractLimited is Extract within lim. An entry whose path is deeper than MaxPathDepth,
// longer than MaxPathBytes or has a component longer than MaxNameBytes is refused with
// ErrUnsafePath; a package whose files together exceed lim.MaxUnpackedBytes, or that unpacks
// to more than lim.MaxRatio times the compressed bytes read so far once past lim.RatioFloor,
// is refused with ErrTooLarge before the bytes past the limit are written. The error names
// the entry and the limit, and what was unpacked is removed.
func ExtractLimited(r io.Reader, wantSHA256 string, dest string, lim Limits) (cfg Config, err error) {
	want, err := normaliseSHA256(wantSHA256)
	if err != nil {
		return Config{}, err
	}
	created, err := prepareDest(dest)
	if err != nil {
		return Config{}, err
	}
	defer func() {
		if err != nil {
			cleanDest(dest, created)
		}
	}()

	h := sha256.New()
	in := &countingReader{r: io.TeeReader(r, h)}
	x, err := newExtractor(dest, lim.withDefaults(), in)
	if err != nil {
		return Config{}, err
	}
	defer x.close()

	unpackErr := x.unpack(in)
	// A corrupted or truncated upload usually shows first as a gzip or tar error; when a
	// checksum was given, read the rest and report the mismatch, the real cause, instead.
	if want != "" {
		if _, drainErr := io.Copy(io.Discard, in); drainErr != nil && unpackErr == nil {
			unpackErr = fmt.Errorf("reading model package: %w", drainErr)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return Config{}, fmt.Errorf("%w: archive has sha256 %s, want %s (%d bytes read)", ErrChecksum, got, want, in.n)
		}
	}
	if unpackErr != nil {
		return Config{}, unpackErr
	}
	if err := x.checkSymlinks(); err != nil {
		return Config{}, err
	}
	return x.readConfig()
}

func normaliseSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	if s == "" {
		return "", nil
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("want sha256 %q: not 64 hex digits", s)
	}
	return s, nil
}

// prepareDest makes sure dest is an empty directory, so that cleaning up after a failure
// can remove everything in it without touching anything that was there before.
func prepareDest(dest string) (created bool, err error) {
	entries, err := os.ReadDir(dest)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("extract destination: %w", err)
	case len(entries) > 0:
		return false, fmt.Errorf("extract destination %s is not empty", dest)
	}
	return false, nil
}

func cleanDest(dest string, created bool) {
	if created {
		_ = os.RemoveAll(dest)
		return
	}
	entries, _ := os.ReadDir(dest)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dest, e.Name()))
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// extractor writes entries through an os.Root, which the kernel keeps inside dest even if
// a check here were wrong; the checks refuse what the root would merely contain.
//
// An os.Root resolves a path one component at a time, so every operation on a path costs
// its depth, and an archive of deep paths would cost the square of its size. Instead the
// extractor keeps handles on the directories from the root to the last entry's directory,
// and works on an entry from its directory's handle: an entry costs only the components in
// which its directory differs from the last one's (in a tar of a tree, a few).
type extractor struct {
	root     *os.Root
	lim      Limits
	in       *countingReader // the compressed bytes, for the expansion ratio
	dirs     map[string]bool // directories created or verified, never replaced afterwards
	symlinks []string
	entries  int
	bytes    int64 // declared sizes of the files so far
	written  int64 // bytes of file content written so far

	cwd     []string   // the components of the directory the handles lead to
	handles []*os.Root // handles[i] is open on the directory cwd[:i+1]
}

func newExtractor(dest string, lim Limits, in *countingReader) (*extractor, error) {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return nil, err
	}
	return &extractor{root: root, lim: lim, in: in, dirs: map[string]bool{".": true}}, nil
}

func (x *extractor) close() {
	x.leave(0)
	x.root.Close()
}

// top returns the handle on the directory cwd names.
func (x *extractor) top() *os.Root {
	if len(x.handles) == 0 {
		return x.root
	}
	return x.handles[len(x.handles)-1]
}

// leave closes the handles below the first depth components of cwd.
func (x *extractor) leave(depth int) {
	for i := len(x.handles) - 1; i >= depth; i-- {
		x.handles[i].Close()
	}
	x.cwd, x.handles = x.cwd[:depth], x.handles[:depth]
}

func (x *extractor) unpack(in io.Reader) error {
	gz, err := gzip.NewReader(in)
	if err != nil {
		return fmt.Errorf("model package is not gzip: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading model package: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
	// The tar end marker may be followed by padding; reading to the end of the gzip stream
	// checks its CRC and lets the checksum cover every byte. The padding is bounded so that
	// a bomb cannot hide there.
	n, err := io.Copy(io.Discard, io.LimitReader(gz, 1<<20+1))
	if err != nil {
		return fmt.Errorf("reading model package: %w", err)
	}
	if n > 1<<20 {
		return fmt.Errorf("%w: more than 1 MiB of data after the end of the tar archive", ErrTooLarge)
	}
	return nil
}

func (x *extractor) entry(hdr *tar.Header, tr io.Reader) error {
	x.entries++
	if x.entries > MaxEntries {
		return fmt.Errorf("%w: more than %d entries", ErrTooLarge, MaxEntries)
	}
	name, err := entryName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the package root itself, as written by `tar -C dir .`
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		_, err := x.mkdirs(name, dirMode(hdr.Mode), true)
		return err
	case tar.TypeReg: // the reader turns the legacy TypeRegA into TypeReg
		return x.writeFile(name, hdr, tr)
	case tar.TypeSymlink:
		return x.symlink(name, hdr.Linkname)
	case tar.TypeLink:
		return fmt.Errorf("%w: %s is a hard link", ErrUnsafePath, hdr.Name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return fmt.Errorf("%w: %s is a device or fifo", ErrUnsafePath, hdr.Name)
	default:
		return fmt.Errorf("%w: %s has unsupported tar type %q", ErrUnsafePath, hdr.Name, hdr.Typeflag)
	}
}

// entryName cleans an entry's name and refuses any that leaves the package or breaks the
// path limits.
func entryName(raw string) (string, error) {
	if raw == "" || strings.ContainsRune(raw, 0) {
		return "", fmt.Errorf("%w: empty or NUL in entry name %q", ErrUnsafePath, shorten(raw))
	}
	if strings.HasPrefix(raw, "/") || filepath.IsAbs(raw) {
		return "", fmt.Errorf("%w: %s is an absolute path", ErrUnsafePath, shorten(raw))
	}
	name := path.Clean(raw)
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("%w: %s leads outside the package", ErrUnsafePath, shorten(raw))
	}
	if err := checkPathLimits(name); err != nil {
		return "", fmt.Errorf("%w: %s %w", ErrUnsafePath, shorten(raw), err)
	}
	return name, nil
}

// checkPathLimits checks a cleaned, relative path against MaxPathDepth, MaxPathBytes and
// MaxNameBytes, in one pass over it.
func checkPathLimits(name string) error {
	if depth := strings.Count(name, "/") + 1; depth > MaxPathDepth {
		return fmt.Errorf("has %d path components, over the limit of %d", depth, MaxPathDepth)
	}
	if len(name) > MaxPathBytes {
		return fmt.Errorf("is %d bytes, over the limit of %d", len(name), MaxPathBytes)
	}
	for rest := name; rest != ""; {
		c, after, _ := strings.Cut(rest, "/")
		if len(c) > MaxNameBytes {
			return fmt.Errorf("has a name of %d bytes, over the limit of %d", len(c), MaxNameBytes)
		}
		rest = after
	}
	return nil
}

// shorten cuts a name for an error message: an entry may be named by kilobytes.
func shorten(s string) string {
	const keep = 120
	if len(s) <= keep {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:keep], len(s))
}

func dirMode(m int64) os.FileMode  { return os.FileMode(m)&0o777 | 0o700 }
func fileMode(m int64) os.FileMode { return os.FileMode(m)&0o777 | 0o600 }

// mkdirs creates dir and its missing parents, gives dir mode when setMode is set (a
// directory entry; a file's parents keep theirs), and returns a handle on dir. A parent that
// exists must be a real directory: writing through a symlink an earlier entry made is how
// archives escape.
//
// Directories already made or checked are not looked at again, and each is reached from
// the handle on its parent, so that an entry costs what its path adds to the last one's.
func (x *extractor) mkdirs(dir string, mode os.FileMode, setMode bool) (*os.Root, error) {
	if dir == "." {
		return x.root, nil
	}
	comps := strings.Split(dir, "/")
	keep := 0
	for keep < len(comps) && keep < len(x.cwd) && comps[keep] == x.cwd[keep] {
		keep++
	}
	if keep == len(comps) && !setMode {
		x.leave(keep)
		return x.top(), nil
	}
	// dir's own mode is set from its parent's handle.
	keep = min(keep, len(comps)-1)
	x.leave(keep)
	end := len(strings.Join(comps[:keep], "/"))
	for i := keep; i < len(comps); i++ {
		if i > 0 {
			end++ // the slash
		}
		end += len(comps[i])
		p, c, last := dir[:end], comps[i], i == len(comps)-1
		parent := x.top()
		if !x.dirs[p] {
			fi, err := parent.Lstat(c)
			switch {
			case errors.Is(err, os.ErrNotExist):
				perm := os.FileMode(0o755)
				if last && setMode {
					perm = mode
				}
				if err := parent.Mkdir(c, perm); err != nil {
					return nil, err
				}
				// Mkdir's mode passes through the umask; the archive's mode should not.
				if err := parent.Chmod(c, perm); err != nil {
					return nil, err
				}
			case err != nil:
				return nil, err
			case fi.Mode()&os.ModeSymlink != 0:
				return nil, fmt.Errorf("%w: %s would be written through the symlink %s", ErrUnsafePath, shorten(dir), shorten(p))
			case !fi.IsDir():
				return nil, fmt.Errorf("%w: %s needs %s to be a directory, but it is a file", ErrUnsafePath, shorten(dir), shorten(p))
			case last && setMode:
				if err := parent.Chmod(c, mode); err != nil {
					return nil, err
				}
			}
			x.dirs[p] = true
		} else if last && setMode {
			if err := parent.Chmod(c, mode); err != nil {
				return nil, err
			}
		}
		h, err := parent.OpenRoot(c)
		if err != nil {
			return nil, err
		}
		x.cwd, x.handles = append(x.cwd, c), append(x.handles, h)
	}
	return x.top(), nil
}

// prepareLeaf readies name for a new file or symlink: its parents exist as real
// directories, and an earlier entry of the same name (tar allows repeats; the last wins)
// is removed rather than written through. It returns a handle on name's directory and
// name's last component.
func (x *extractor) prepareLeaf(name string) (*os.Root, string, error) {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	parent, err := x.mkdirs(dir, 0o755, false)
	if err != nil {
		return nil, "", err
	}
	if x.dirs[name] {
		return nil, "", fmt.Errorf("%w: %s is both a directory and a file", ErrUnsafePath, shorten(name))
	}
	if _, err := parent.Lstat(base); err == nil {
		if err := parent.Remove(base); err != nil {
			return nil, "", err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, "", err
	}
	return parent, base, nil
}

func (x *extractor) writeFile(name string, hdr *tar.Header, tr io.Reader) error {
	if hdr.Size < 0 {
		return fmt.Errorf("reading model package: %s has a negative size", name)
	}
	if limit := x.lim.MaxUnpackedBytes; hdr.Size > limit-x.bytes {
		return fmt.Errorf("%w: %s (%d bytes) would take the package's files past the limit of %d bytes unpacked",
			ErrTooLarge, shorten(name), hdr.Size, limit)
	}
	x.bytes += hdr.Size
	parent, base, err := x.prepareLeaf(name)
	if err != nil {
		return err
	}
	mode := fileMode(hdr.Mode)
	// O_EXCL: the name was just cleared, so anything there now (a symlink included) is not
	// ours to write through.
	f, err := parent.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(&ratioWriter{x: x, name: name, w: f}, tr, hdr.Size); err != nil {
		f.Close()
		if errors.Is(err, ErrTooLarge) {
			return err
		}
		return fmt.Errorf("reading model package: %s: %w", shorten(name), err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ratioWriter writes a file's content while the package stays within its expansion ratio:
// it writes what the ratio allows of each chunk and refuses the rest, so that a bomb is
// stopped at the limit rather than after it.
type ratioWriter struct {
	x    *extractor
	name string
	w    io.Writer
}

func (rw *ratioWriter) Write(p []byte) (int, error) {
	x := rw.x
	allowed := int64(len(p))
	if x.lim.MaxRatio > 0 {
		limit := max(x.lim.RatioFloor, x.lim.MaxRatio*x.in.n)
		allowed = min(allowed, max(limit-x.written, 0))
	}
	n, err := rw.w.Write(p[:allowed])
	x.written += int64(n)
	if err == nil && n < len(p) {
		err = fmt.Errorf("%w: %s: the package unpacks to more than %d:1 of its compressed size (%d bytes from %d compressed bytes read, past the %d bytes any package may unpack to)",
			ErrTooLarge, shorten(rw.name), x.lim.MaxRatio, x.written+int64(len(p)-n), x.in.n, x.lim.RatioFloor)
	}
	return n, err
}

func (x *extractor) symlink(name, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%w: symlink %s has an empty target", ErrUnsafePath, name)
	}
	if len(target) > MaxPathBytes {
		return fmt.Errorf("%w: symlink %s has a target of %d bytes, over the limit of %d", ErrUnsafePath, name, len(target), MaxPathBytes)
	}
	// An absolute target points outside dest wherever dest ends up.
	if strings.HasPrefix(target, "/") || filepath.IsAbs(target) {
		return fmt.Errorf("%w: symlink %s points to the absolute path %s", ErrUnsafePath, name, target)
	}
	if resolved := path.Join(path.Dir(name), target); resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("%w: symlink %s points outside the package (%s)", ErrUnsafePath, name, target)
	}
	parent, base, err := x.prepareLeaf(name)
	if err != nil {
		return err
	}
	if err := parent.Symlink(target, base); err != nil {
		return err
	}
	x.symlinks = append(x.symlinks, name)
	return nil
}

// checkSymlinks resolves every symlink in the finished tree as the kernel would, link by
// link. The lexical check at creation cannot see chains: "a -> ." and "b -> a/.." each look
// harmless, but b leads to the parent of dest.
func (x *extractor) checkSymlinks() error {
	for _, link := range x.symlinks {
		if err := x.resolvesInside(link); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) resolvesInside(link string) error {
	if fi, err := x.root.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return err // replaced by a later entry of the same name
	}
	target, err := x.root.Readlink(link)
	if err != nil {
		return err
	}
	var stack []string // resolved components, relative to dest
	if dir := path.Dir(link); dir != "." {
		stack = strings.Split(dir, "/")
	}
	pending := strings.Split(target, "/")
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return fmt.Errorf("%w: symlink %s resolves outside the package", ErrUnsafePath, link)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := strings.Join(append(stack[:len(stack):len(stack)], c), "/")
		fi, err := x.root.Lstat(cur)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			// Missing components resolve lexically: a dangling link is allowed, one whose
			// remaining ".." would climb out is not.
			stack = append(stack, c)
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return fmt.Errorf("%w: symlink %s: too many levels of links", ErrUnsafePath, link)
		}
		next, err := x.root.Readlink(cur)
		if err != nil {
			return err
		}
		if strings.HasPrefix(next, "/") {
			return fmt.Errorf("%w: symlink %s resolves to an absolute path", ErrUnsafePath, link)
		}
		pending = append(strings.Split(next, "/"), pending...)
	}
	return nil
}

func (x *extractor) readConfig() (Config, error) {
	fi, err := x.root.Lstat(ConfigFile)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, ErrNoConfig
	}
	if err != nil {
		return Config{}, err
	}
	if !fi.Mode().IsRegular() {
		return Config{}, fmt.Errorf("%w: %s is not a regular file", ErrNoConfig, ConfigFile)
	}
	if fi.Size() > maxConfigBytes {
		return Config{}, fieldErr("", "larger than %d bytes", maxConfigBytes)
	}
	text, err := x.root.ReadFile(ConfigFile)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(text)
}

// Pack writes dir as a gzip'd tar to w and returns the SHA-256 (hex) of the bytes written.
//
// The archive depends only on the names, contents, permission bits and symlinks under dir:
// entries are sorted, times are zero (the Unix epoch) and owners are root, so packing the
// same tree twice gives the same bytes and the same content address. Symlinks are kept as
// symlinks; an absolute one that points inside dir is made relative, and one that leads
// outside dir is refused with ErrUnsafePath, as Extract would refuse it. Devices, fifos and
// sockets are refused. What Ignored names is left out: version control, Python's bytecode
// cache (whose timestamps would change the archive on every run) and editors' swap files. Pack does not read config.yaml; ReadConfig does.
func Pack(dir string, w io.Writer) (sha256hex string, err error) {
	return pack(dir, nil, w)
}

// pack writes dir's tree and then each of external (slash-prefixed archive names, such as
// ".external/0/", with the directory to copy there).
func pack(dir string, external []externalDir, w io.Writer) (sha256hex string, err error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	gz := gzip.NewWriter(io.MultiWriter(w, h))
	tw := tar.NewWriter(gz)
	if err := packTree(tw, absDir, ""); err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	if len(external) > 0 {
		if err := packDir(tw, ExternalRoot+"/", 0o755); err != nil {
			return "", err
		}
	}
	for _, e := range external {
		if err := packTree(tw, e.path, e.name); err != nil {
			return "", fmt.Errorf("pack %s (external_package_dirs[%d] %q): %w", e.path, e.index, e.entry, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	return hexSum(h), nil
}

// packTree writes the tree under root with each entry's name prefixed by prefix ("" or a
// directory name ending in "/", which is written first as a directory of root's mode).
func packTree(tw *tar.Writer, root, prefix string) error {
	// WalkDir visits entries in lexical order, which makes the archive deterministic.
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			if prefix == "" {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return packDir(tw, prefix, info.Mode().Perm())
		}
		if Ignored(d.Name(), d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return packEntry(tw, root, p, filepath.ToSlash(rel), prefix, d)
	})
}

// packDir writes a directory entry; name ends in "/".
func packDir(tw *tar.Writer, name string, perm os.FileMode) error {
	return tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeDir,
		Name:     name,
		Mode:     int64(perm),
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	})
}

func packEntry(tw *tar.Writer, absDir, p, rel, prefix string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	hdr := &tar.Header{
		Name:    prefix + rel,
		Mode:    int64(info.Mode().Perm()),
		ModTime: time.Unix(0, 0),
		Format:  tar.FormatPAX,
	}
	switch {
	case info.Mode().IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = info.Size()
	case info.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case info.Mode()&os.ModeSymlink != 0:
		target, err := SymlinkTarget(absDir, rel)
		if err != nil {
			return err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	default:
		return fmt.Errorf("%s: not a regular file, directory or symlink (%s)", rel, info.Mode().Type())
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	// CopyN: a file that grows while being packed must not overrun its header's size.
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

// SymlinkTarget returns the target Pack writes for the symlink at rel (slash-separated,
// relative to absDir): as a path relative to the link, refusing with ErrUnsafePath one that
// resolves outside absDir.
func SymlinkTarget(absDir, rel string) (string, error) {
	link := filepath.Join(absDir, filepath.FromSlash(rel))
	target, err := os.Readlink(link)
	if err != nil {
		return "", err
	}
	realDir, err := filepath.EvalSymlinks(absDir)
	if err != nil {
		return "", err
	}
	abs := target
	if !filepath.IsAbs(target) {
		abs = filepath.Join(filepath.Dir(link), target)
	}
	abs = filepath.Clean(abs)
	// Judge where the link really leads; a dangling one by the path as written.
	resolved, err := filepath.EvalSymlinks(abs)
	var inside string
	var ok bool
	switch {
	case err == nil:
		inside, ok = within(realDir, resolved)
	case errors.Is(err, os.ErrNotExist):
		if inside, ok = within(absDir, abs); !ok {
			inside, ok = within(realDir, abs)
		}
	default:
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%w: symlink %s points outside the package (%s)", ErrUnsafePath, rel, target)
	}
	if !filepath.IsAbs(target) {
		return filepath.ToSlash(target), nil
	}
	// Extract refuses absolute targets, so express this one from the link's directory.
	r, err := filepath.Rel(filepath.Dir(filepath.FromSlash(rel)), inside)
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(r), nil
}

// within reports whether p lies inside dir, and returns its path relative to dir.
func within(dir, p string) (string, bool) {
	r, err := filepath.Rel(dir, p)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", false
	}
	return r, true
}

// skippedDirs are directories Pack leaves out wherever they appear.
var skippedDirs = map[string]bool{".git": true, "__pycache__": true}

// Ignored reports whether Pack leaves out an entry of this name wherever it appears: the
// directories of version control and Python's bytecode cache, and the swap and backup files
// editors write next to what they edit (".x.swp", "x~", ".#x", ".DS_Store"), which are never
// part of a model and come and go while a package is edited.
func Ignored(name string, isDir bool) bool {
	if isDir {
		return skippedDirs[name]
	}
	return name == ".DS_Store" || strings.HasPrefix(name, ".#") || strings.HasSuffix(name, "~") ||
		(strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".swp") || strings.HasSuffix(name, ".swx") ||
			strings.HasSuffix(name, ".swo")))
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
