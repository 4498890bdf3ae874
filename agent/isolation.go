package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/modelplane/modelplane/agent/agentproto"
)

// DefaultReplicaUIDs is the range of user IDs a root agent runs process replicas as, one per
// replica. They need no entry in the user database; an ID that has one is skipped.
const DefaultReplicaUIDs = "70000-79999"

// ReplicaUIDsOff turns replica users off: process replicas run as the agent's own user.
const ReplicaUIDsOff = "off"

// isolation is how the agent keeps process replicas away from itself and from each other.
//
// With replica users, each process replica runs as a user and group of its own, drawn from a
// range of IDs. The layout under the state directory is then:
//
//	state dir            root 0711  (others may pass through, not list)
//	  state.json         root 0600  (control tokens, handles)
//	  envs/              root 0755  (requirements' environments: shared, read-only)
//	  replicas/          root 0711
//	    <id>/            root:<gid> 0750  (the replica's group may enter; nobody else)
//	      pkg/, secrets/, server.py   root:<gid>, group read-only
//	      home/, tmp/    <uid>:<gid> 0700  (HOME and TMPDIR: the only places it writes)
//
// The replica writes only in its home and scratch directories, which the agent never writes
// in: the agent, as root, never follows a link the model made.
type isolation struct {
	first, last int // the replica user IDs; both 0 without replica users
	// path is the agent's PATH less the directories replica users cannot reach (a version
	// manager's shims in root's home, say): their commands are looked up there.
	path   string
	report agentproto.Isolation
}

func (i isolation) on() bool { return i.first > 0 }

// reachOff is what a model on a node without isolation can reach, for the warnings.
const reachOff = "model servers run as the agent's own user and can read its state directory " +
	"(every replica's control token), the node token in its environment or files, and every " +
	"other replica's package and secrets"

// setupIsolation decides from uids (Config.ReplicaUIDs) and the agent's effective user ID
// whether process replicas can run as users of their own, and prepares the state directory
// for them. A malformed range is an error; an impossible isolation is reported, not an error.
func setupIsolation(stateDir, uids string, euid int) (isolation, error) {
	off := func(why string) isolation {
		return isolation{report: agentproto.Isolation{Mode: agentproto.IsolationNone, Warning: why + ": " + reachOff}}
	}
	if uids == ReplicaUIDsOff {
		return off("replica users are turned off (--replica-uids off)"), nil
	}
	if uids == "" {
		uids = DefaultReplicaUIDs
	}
	first, last, err := parseUIDRange(uids)
	if err != nil {
		return isolation{}, err
	}
	if euid != 0 {
		return off(fmt.Sprintf("the agent runs as user %d, not root, so it cannot run model servers as users of their own", euid)), nil
	}
	if blocked := unreachableAncestor(stateDir); blocked != "" {
		return off(fmt.Sprintf("replica users cannot reach the state directory %s: %s; "+
			"give it o+x, or choose a --state-dir they can reach", stateDir, blocked)), nil
	}
	for dir, mode := range map[string]os.FileMode{
		stateDir: 0o711, filepath.Join(stateDir, "replicas"): 0o711, filepath.Join(stateDir, "envs"): 0o755,
	} {
		if err := os.Chmod(dir, mode); err != nil {
			return isolation{}, err
		}
	}
	var reachable []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if filepath.IsAbs(d) && unreachableAncestor(filepath.Join(d, "x")) == "" {
			reachable = append(reachable, d)
		}
	}
	return isolation{first: first, last: last, path: strings.Join(reachable, string(os.PathListSeparator)), report: agentproto.Isolation{
		Mode: agentproto.IsolationReplicaUsers, UIDs: fmt.Sprintf("%d-%d", first, last),
	}}, nil
}

// resolve answers the program a replica user runs for name: a bare name is looked up in the
// directories of PATH that replica users can reach, so that a python3 of root's own (a
// version manager's, in /root) gives way to one installed for everyone. Without replica
// users, or when none is found, name is answered as it is.
func (i isolation) resolve(name string) string {
	if !i.on() || name == "" || strings.ContainsRune(name, '/') {
		return name
	}
	for _, d := range filepath.SplitList(i.path) {
		p := filepath.Join(d, name)
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o001 != 0 {
			return p
		}
	}
	return name
}

// closedGPUDevices lists the NVIDIA device files under dev that others cannot read and
// write: a replica user's server opens them to use its GPUs.
func closedGPUDevices(dev string) []string {
	paths, _ := filepath.Glob(filepath.Join(dev, "nvidia*"))
	var closed []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil || info.Mode()&os.ModeCharDevice == 0 {
			continue
		}
		if info.Mode().Perm()&0o006 != 0o006 {
			closed = append(closed, fmt.Sprintf("%s (mode %#o)", p, info.Mode().Perm()))
		}
	}
	return closed
}

// parseUIDRange reads "FIRST-LAST".
func parseUIDRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || first < 1000 || last < first || last > 1<<31-2 {
		return 0, 0, fmt.Errorf("replica user IDs %q: want FIRST-LAST, 1000 <= FIRST <= LAST < 2147483647, or %q", s, ReplicaUIDsOff)
	}
	return first, last, nil
}

// unreachableAncestor names the first directory above dir that others cannot pass through,
// or answers "" when every one lets them.
func unreachableAncestor(dir string) string {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err != nil {
			return err.Error()
		}
		if info.Mode().Perm()&0o001 == 0 {
			return fmt.Sprintf("%s is mode %#o", d, info.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

// errNoReplicaUID means every replica user ID is taken.
var errNoReplicaUID = errors.New("every replica user ID is in use")

// allocateUIDLocked picks the replica user ID after the last one given, skipping IDs that a
// replica the agent still remembers holds (its directory may still be there), IDs of warm
// spares and IDs of the user database. Going round the range, rather than taking the lowest free ID, keeps an ID
// unused for as long as the range allows. a.mu must be held.
func (a *Agent) allocateUIDLocked() (int, error) {
	iso := a.isolation
	held := maps.Clone(a.spareUIDs)
	if held == nil {
		held = map[int]bool{}
	}
	for _, r := range a.replicas {
		held[r.UID] = true
	}
	n := iso.last - iso.first + 1
	next := a.nextUID
	if next < iso.first || next > iso.last {
		next = iso.first
	}
	for i := 0; i < n; i++ {
		uid := iso.first + (next-iso.first+i)%n
		if held[uid] {
			continue
		}
		if _, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			continue
		}
		a.nextUID = uid + 1
		return uid, nil
	}
	return 0, fmt.Errorf("%w (%d-%d): stop replicas or widen --replica-uids", errNoReplicaUID, iso.first, iso.last)
}

// prepareReplicaDir sets the replica's directory up for its user, before its server starts:
// see isolation. Without a replica user the directory is the agent's alone.
func (a *Agent) prepareReplicaDir(r *record) error {
	dir := a.replicaDir(r.ID)
	if r.UID == 0 {
		return os.Chmod(dir, 0o700)
	}
	gid := r.UID
	if err := os.Chown(dir, 0, gid); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return err
	}
	for _, sub := range []string{"home", "tmp"} {
		p := filepath.Join(dir, sub)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Lchown(p, r.UID, gid); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "home" || e.Name() == "tmp" {
			continue
		}
		if err := groupReadable(filepath.Join(dir, e.Name()), gid); err != nil {
			return err
		}
	}
	return nil
}

// spareUsers is the agent's pool of replica user IDs as the process runtime's warm spares
// draw from it (runtime.ReplicaUsers), for the start of replica r.
type spareUsers struct {
	a *Agent
	r *record
}

// Reserve draws an ID as a replica's is drawn, and holds it until Claim or Release.
func (u spareUsers) Reserve() (int, error) {
	u.a.mu.Lock()
	defer u.a.mu.Unlock()
	uid, err := u.a.allocateUIDLocked()
	if err != nil {
		return 0, err
	}
	u.a.spareUIDs[uid] = true
	return uid, nil
}

// Release gives back the ID of a spare that ended without a replica.
func (u spareUsers) Release(uid int) {
	u.a.mu.Lock()
	defer u.a.mu.Unlock()
	delete(u.a.spareUIDs, uid)
}

// Claim makes the spare's uid r's user, whose former ID goes back to the pool, and prepares
// r's directory for it. The ID is r's even when preparing fails.
func (u spareUsers) Claim(uid int) error {
	u.a.mu.Lock()
	delete(u.a.spareUIDs, uid)
	u.r.UID = uid
	if err := u.a.persistLocked(); err != nil {
		u.a.log.Error("writing the state file", "err", err)
	}
	u.a.mu.Unlock()
	return u.a.prepareReplicaDir(u.r)
}

// shareWithReplica lets the replica's user read what the agent wrote under path since its
// directory was prepared (a patch's files).
func (a *Agent) shareWithReplica(r *record, path string) error {
	if r.UID == 0 {
		return nil
	}
	return groupReadable(path, r.UID)
}

// groupReadable gives what lies under root to root and gid, with the group's bits the
// owner's without write, and nothing for others. Links are changed, not followed.
func groupReadable(root string, gid int) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, 0, gid); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		m := info.Mode().Perm() & 0o700
		return os.Chmod(p, m|(m>>3)&^0o020)
	})
}
