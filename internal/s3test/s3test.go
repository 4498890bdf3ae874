// Package s3test starts a real S3-compatible server for tests: SeaweedFS (Apache-2.0),
// built from the module proxy at the version internal/s3test/weed/go.mod pins. That module
// is separate so that SeaweedFS's dependencies stay out of modelplane's own.
//
// The binary is built once into the user's cache directory and reused by later runs; the
// first build downloads and compiles SeaweedFS, which takes minutes. MODELPLANE_TEST_WEED
// names a weed binary to use instead.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/internal/freeport"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/internal/toolbuild"
)

// Region is the region the test server's clients use; SeaweedFS accepts any.
const Region = "us-east-1"

// Server is a running SeaweedFS with an S3 gateway, one identity that may do anything and
// one bucket. Tests share the bucket, each under a prefix of its own: SeaweedFS gives every
// bucket volumes of its own, and a bucket per test would soon run out of them.
type Server struct {
	Bucket                 string
	Endpoint               string
	AccessKeyID, SecretKey string
	cmd                    *exec.Cmd
	ports                  []int
	dir                    string
	out                    *proctest.Buffer
	exited                 chan struct{}
	client                 *s3.Client
}

// Start builds weed if needed and starts a server in a fresh directory. The caller stops it
// with Stop; a package's TestMain usually starts one for all its tests.
func Start() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "s3test-*")
	if err != nil {
		return nil, err
	}
	s := &Server{AccessKeyID: "modelplane-test", SecretKey: strings.ToLower(rand.Text()), dir: dir,
		out: &proctest.Buffer{}, exited: make(chan struct{})}
	cfg, err := json.Marshal(map[string]any{"identities": []map[string]any{{
		"name":        "modelplane-test",
		"credentials": []map[string]string{{"accessKey": s.AccessKeyID, "secretKey": s.SecretKey}},
		"actions":     []string{"Admin", "Read", "List", "Tagging", "Write"},
	}}})
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		return nil, err
	}
	// Every port, gRPC included, is named: SeaweedFS's default gRPC port is the HTTP port
	// plus 10000, which may be taken.
	ports, err := freeport.Pick(8)
	if err != nil {
		return nil, err
	}
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	s.Endpoint = "http://127.0.0.1:" + p(6)
	s.cmd = exec.Command(bin, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir="+data,
		"-master.port="+p(0), "-master.port.grpc="+p(1), "-master.volumeSizeLimitMB=64",
		"-volume.port="+p(2), "-volume.port.grpc="+p(3), "-volume.max=64",
		"-filer", "-filer.port="+p(4), "-filer.port.grpc="+p(5),
		"-s3", "-s3.port="+p(6), "-s3.port.grpc="+p(7), "-s3.config="+cfgPath, "-master.telemetry=false",
		"-filer.localSocket="+filepath.Join(dir, "filer.sock"), "-s3.localSocket="+filepath.Join(dir, "s3.sock"))
	s.ports = ports
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	s.client = s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint), Region: Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretKey, ""),
	})
	if err := s.wait(2 * time.Minute); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// wait returns once the S3 gateway creates a bucket, which needs the master, a volume
// server and the filer all up.
func (s *Server) wait(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	s.Bucket = "modelplane-test"
	bucket := s.Bucket
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("weed server exited at start:\n%s", s.out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
		var owned *types.BucketAlreadyOwnedByYou
		if err == nil || errors.As(err, &owned) {
			_, err = s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("probe"),
				Body: strings.NewReader("x"), ContentLength: aws.Int64(1)})
		}
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("weed server's S3 gateway at %s not ready after %s: %v\n%s", s.Endpoint, limit, err, s.out.String())
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared starts one server for the test package on its first call and returns it to every
// call; the package's TestMain stops it with StopShared. A test that fails gets the server's
// warnings and errors in its log.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = Start() })
	if shared.err != nil {
		t.Fatalf("starting SeaweedFS: %v", shared.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("SeaweedFS's warnings and errors:\n%s", shared.srv.Problems())
		}
	})
	return shared.srv
}

// StopShared stops the server Shared started, if it did.
func StopShared() {
	if shared.srv != nil {
		shared.srv.Stop()
	}
}

// Stop ends the server and removes its data.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
	}
	_ = os.RemoveAll(s.dir)
	// The gRPC servers' sockets are always in /tmp, named by their ports.
	for _, port := range s.ports {
		matches, _ := filepath.Glob("/tmp/seaweedfs-*-grpc-" + strconv.Itoa(port) + ".sock")
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
}

// Output is what the server has logged so far.
func (s *Server) Output() string { return s.out.String() }

// Problems is the server's log of warnings and errors so far, for a failed test's message.
func (s *Server) Problems() string {
	var b strings.Builder
	for line := range strings.Lines(s.out.String()) {
		if strings.HasPrefix(line, "E") || strings.HasPrefix(line, "W") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// Client is an S3 client with the test identity, for looking at a bucket directly.
func (s *Server) Client() *s3.Client { return s.client }

// Prefix is a fresh prefix of the bucket, for one test's keys.
func Prefix() string { return "t-" + strings.ToLower(rand.Text())[:16] + "/" }

// Config is a blob.S3Config for the server's bucket, under prefix.
func (s *Server) Config(prefix string) blob.S3Config {
	return blob.S3Config{Bucket: s.Bucket, Endpoint: s.Endpoint, Region: Region, PathStyle: true, Prefix: prefix,
		AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretKey}
}

// Keys lists the keys in the bucket under prefix.
func (s *Server) Keys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// Binary returns the path of a weed binary, building it on first use.
func Binary() (string, error) {
	buildOnce.Do(func() {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			buildErr = errors.New("s3test: cannot find its own source")
			return
		}
		built, buildErr = toolbuild.Tool{Name: "weed", ModuleDir: filepath.Join(filepath.Dir(file), "weed"),
			Requires: "github.com/seaweedfs/seaweedfs", Package: "github.com/seaweedfs/seaweedfs/weed",
			Env: "MODELPLANE_TEST_WEED"}.Binary()
	})
	return built, buildErr
}
