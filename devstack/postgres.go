package devstack

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lib/pq"
	"github.com/modelplane/modelplane/internal/freeport"
)

// DefaultLocalDatabaseURL is the local server tried when DATABASE_URL is unset.
const DefaultLocalDatabaseURL = "postgres://postgres@127.0.0.1:5432/modelplane?sslmode=disable"

// PostgresOptions say where to find PostgreSQL.
type PostgresOptions struct {
	// DatabaseURL, when set, is used as it is.
	DatabaseURL string
	// LocalURL is tried next; its database is created if the server has none of that name.
	LocalURL string
	// DataDir holds the private cluster (DataDir/postgres) started when neither answers.
	DataDir string
}

// Postgres is the database the stack uses, and how to stop it if the stack started it.
type Postgres struct {
	URL string
	// Source says which of the three it is: "DATABASE_URL", "local server" or "private cluster".
	Source string
	stop   func() error
}

// Stop stops the private cluster; for the other sources it does nothing.
func (p *Postgres) Stop() error {
	if p.stop == nil {
		return nil
	}
	return p.stop()
}

// StartPostgres finds PostgreSQL: DATABASE_URL, else the local server, else a private
// cluster in the data directory. When none works the error says what each attempt found.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	if opts.DatabaseURL != "" {
		if err := ping(ctx, opts.DatabaseURL); err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		return &Postgres{URL: opts.DatabaseURL, Source: "DATABASE_URL"}, nil
	}
	local := opts.LocalURL
	if local == "" {
		local = DefaultLocalDatabaseURL
	}
	localErr := ensureDatabase(ctx, local)
	if localErr == nil {
		return &Postgres{URL: local, Source: "local server"}, nil
	}
	dir := filepath.Join(opts.DataDir, "postgres")
	p, privErr := StartPrivatePostgres(ctx, dir, 0)
	if privErr == nil {
		return p, nil
	}
	return nil, fmt.Errorf("no PostgreSQL: DATABASE_URL is unset; %s: %v; private cluster in %s: %v",
		redact(local), localErr, dir, privErr)
}

func ping(ctx context.Context, u string) error {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// ensureDatabase connects to u's server and creates u's database if it is missing.
func ensureDatabase(ctx context.Context, u string) error {
	parsed, err := url.Parse(u)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(parsed.Path, "/")
	if name == "" {
		return errors.New("the URL names no database")
	}
	admin := *parsed
	admin.Path = "/postgres"
	db, err := sql.Open("postgres", admin.String())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		_, err := db.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(name))
		var pqErr *pq.Error
		// Another process may have created it in between.
		if err != nil && !(errors.As(err, &pqErr) && pqErr.Code == "42P04") {
			return fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return ping(ctx, u)
}

// redact hides a password in a URL for messages.
func redact(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "the database URL"
	}
	return parsed.Redacted()
}

// postgresBinDir finds initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin.
func postgresBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("initdb and pg_ctl are not on PATH or under /usr/lib/postgresql/*/bin (install the PostgreSQL server package)")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// runAs says which user the cluster runs as: the current one, or postgres when running as
// root, since PostgreSQL refuses to run as root.
type runAs struct {
	cred *syscall.Credential
	uid  int
	gid  int
}

func clusterUser() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: os.Getuid(), gid: os.Getgid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runAs{}, errors.New("running as root and there is no postgres user to run the cluster as")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return runAs{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
}

func (r runAs) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if r.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	}
	return cmd
}

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Errorf("%s: %v: %s", filepath.Base(cmd.Path), err, msg)
	}
	return nil
}

// StartPrivatePostgres initialises (once) and starts a cluster in dir on port (0: a free
// one), reachable over TCP on 127.0.0.1 only, with a database named modelplane. Started again
// on the same directory and port after Stop, it serves the same data at the same URL, as a
// restarted database server does.
func StartPrivatePostgres(ctx context.Context, dir string, port int) (*Postgres, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	as, err := clusterUser()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if as.cred != nil {
		if err := os.Chown(dir, as.uid, as.gid); err != nil {
			return nil, err
		}
		if err := makeTraversable(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	}
	initdb, pgctl := filepath.Join(bin, "initdb"), filepath.Join(bin, "pg_ctl")
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := run(as.command(ctx, dir, initdb, "-D", dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions")); err != nil {
			return nil, err
		}
	}
	// A cluster left running by a process that was killed is stopped first, so that this one
	// starts on a port we know.
	if as.command(ctx, dir, pgctl, "-D", dir, "status").Run() == nil {
		_ = run(as.command(ctx, dir, pgctl, "-D", dir, "-m", "fast", "-w", "stop"))
	}
	if port == 0 {
		if port, err = freeport.One(); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k ''", port)
	if err := run(as.command(ctx, dir, pgctl, "-D", dir, "-o", opts, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start")); err != nil {
		return nil, err
	}
	pid := postmasterPID(dir)
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		if err := run(as.command(ctx, dir, pgctl, "-D", dir, "-m", "fast", "-w", "stop")); err != nil {
			return err
		}
		// pg_ctl returns once the server removed its pid file, a moment before the process
		// itself is gone; stopping means gone.
		for pid > 0 && ctx.Err() == nil && syscall.Kill(pid, 0) == nil {
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/modelplane?sslmode=disable", port)
	if err := ensureDatabase(ctx, u); err != nil {
		_ = stop()
		return nil, err
	}
	return &Postgres{URL: u, Source: "private cluster", stop: stop}, nil
}

// makeTraversable lets the postgres user pass through the data directory (execute permission
// only, so it still cannot list it) and checks that it can reach it through every ancestor.
// Ancestors are not changed: opening up, say, /root is the administrator's call.
func makeTraversable(dataDir string) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o001 == 0 {
		if err := os.Chmod(abs, st.Mode().Perm()|0o001); err != nil {
			return err
		}
	}
	for d := filepath.Dir(abs); d != filepath.Dir(d); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("the postgres user cannot reach %s because %s is not searchable by others: choose a --data-dir elsewhere or set DATABASE_URL", abs, d)
		}
	}
	return nil
}

// postmasterPID reads the server's PID from its pid file (first line); 0 when unknown.
func postmasterPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}
