// Package gitinit clones the repository of one Git context into the pod's
// shared volume, the work of the git-init image.
//
// It uses go-git rather than the git binary so that the image holds a single
// static executable and nothing it could shell out to.
package gitinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/initimages/internal/initutil"
)

// Options tune a run. The zero value is not useful; start from DefaultOptions.
type Options struct {
	// RetryBudget is how long transient network errors are retried before
	// giving up. The first attempt always happens.
	RetryBudget time.Duration
	// InitialBackoff is the wait after the first failed attempt; it doubles
	// after each further one, up to MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// DialTimeout bounds each connection attempt (SSH and HTTP, including
	// the TLS handshake).
	DialTimeout time.Duration
	// IdleTimeout is how long an HTTP connection may deliver no data
	// (including the wait for a response's headers) before the attempt
	// fails as a transient error. It bounds a stalled server, not the
	// length of a large transfer.
	IdleTimeout time.Duration
	// MemoryLimit is the container's memory limit in bytes (0: none). A
	// file too large to decode within it fails the checkout with a clear
	// error instead of an OOM kill.
	MemoryLimit int64
	// Roots are the directories Dest must lie in.
	Roots []string
	// Log receives warnings and progress, one line each.
	Log io.Writer
}

// DefaultOptions returns the options used in the image.
func DefaultOptions() Options {
	return Options{
		RetryBudget:    60 * time.Second,
		InitialBackoff: time.Second,
		MaxBackoff:     15 * time.Second,
		DialTimeout:    30 * time.Second,
		IdleTimeout:    60 * time.Second,
		MemoryLimit:    memoryLimit(),
		Roots:          initutil.DefaultCloneRoots,
		Log:            os.Stderr,
	}
}

const remoteName = "origin"

// go-git's LargeObjectThreshold is left at 0: above a threshold, go-git
// v5 streams deltas from the pack and, when a delta copies from an earlier
// part of its base after a later one, reads the wrong bytes without an
// error (go-git issue #2378). Every blob is decoded in memory instead; the
// checkout bounds that with memoryLimit and verifies every blob's hash.

// Run carries out plan. On success the Result names the checked-out commit
// and the repository URL without credentials. Errors are one line, prefixed
// with the plan's Description.
func Run(ctx context.Context, plan *contract.GitPlan, opts Options) (contract.Result, error) {
	initutil.SetGroupUmask()
	setHTTPTimeouts(opts.DialTimeout, opts.IdleTimeout)
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	// Every line that leaves the process goes through the redactor, so a
	// password can leak neither through go-git's messages nor through a
	// Description that quotes a URL with credentials.
	red := &redactor{}
	red.add(plan.Repository)
	opts.Log = &redactingWriter{w: opts.Log, r: red}
	res := contract.Result{}
	what := plan.Description
	if what == "" {
		what = "Git context"
	}
	r, err := newRun(plan, opts, red)
	if r != nil {
		res.Repository = r.url
	}
	if err == nil {
		var commit plumbing.Hash
		commit, err = r.cloneWithRetry(ctx)
		res.Commit = commit.String()
		if !plan.Submodules {
			res.SubmodulesLeftOut = leftOut(r.submodules)
		}
	}
	if err != nil {
		res.Commit = ""
		res.SubmodulesLeftOut = nil
		return res, errors.New(red.redact(what + ": " + err.Error()))
	}
	return res, nil
}

// run is one git-init invocation with its plan already validated.
type run struct {
	plan  *contract.GitPlan
	opts  Options
	url   string // repository URL without credentials
	auth  transport.AuthMethod
	depth int
	// maxBlob is the largest blob the checkout decodes (0: no limit).
	maxBlob int64
	// proxy routes SSH connections through the idle-timeout dialer.
	proxy transport.ProxyOptions
	// dest is the open destination directory.
	dest *os.Root
	// level is 0 for the Git context's repository, n for a submodule n
	// levels down.
	level int
	// submodules are the gitlinks of the checked-out tree.
	submodules []submodule
}

func newRun(plan *contract.GitPlan, opts Options, red *redactor) (*run, error) {
	if plan.Repository == "" {
		return nil, errors.New("plan has no repository")
	}
	clean, userinfo, ep, err := parseRepository(plan.Repository)
	if err != nil {
		return nil, err
	}
	r := &run{plan: plan, opts: opts, url: clean, depth: plan.Depth, maxBlob: maxBlobFor(opts.MemoryLimit)}
	if plan.Depth < 0 {
		return r, fmt.Errorf("depth %d is negative: use 0 for full history or a positive number of commits", plan.Depth)
	}
	if plan.Dest == "" {
		return r, errors.New("plan has no dest directory")
	}
	if _, _, err := initutil.SplitUnderRoot(plan.Dest, opts.Roots, true); err != nil {
		return r, fmt.Errorf("dest: %w", err)
	}
	if plan.Path != "" {
		if _, err := checkoutRelPath(plan.Path); err != nil {
			return r, err
		}
	}
	creds, err := readCredentials(plan.CredentialsDir)
	if err != nil {
		return r, err
	}
	red.secret(creds.password)
	r.auth, err = authFor(ep, clean, userinfo, creds, opts)
	if err != nil {
		return r, err
	}
	if ep.Protocol == "ssh" {
		r.proxy = sshProxyOptions()
	}
	return r, nil
}

// leftOut lists submodule paths for the Result, bounded.
func leftOut(subs []submodule) []string {
	var out []string
	for i, s := range subs {
		if i == maxLeftOut {
			out = append(out, fmt.Sprintf("... and %d more", len(subs)-maxLeftOut))
			break
		}
		out = append(out, s.Path)
	}
	return out
}

// checkoutRelPath validates plan.Path, which is relative to the checkout.
func checkoutRelPath(p string) (string, error) {
	clean := filepath.Clean(strings.TrimPrefix(p, "/"))
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("path %q must stay inside the repository (no \"..\")", p)
		}
	}
	return clean, nil
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.opts.Log, format+"\n", args...)
}

// cloneWithRetry runs attempts until one succeeds, a permanent error occurs
// or the retry budget is spent.
func (r *run) cloneWithRetry(ctx context.Context) (plumbing.Hash, error) {
	if err := r.prepareDest(); err != nil {
		return plumbing.ZeroHash, err
	}
	defer r.dest.Close()
	start := time.Now()
	backoff := r.opts.InitialBackoff
	for attempt := 1; ; attempt++ {
		commit, err := r.clone(ctx)
		if err == nil {
			if err := r.checkPath(commit); err != nil {
				return plumbing.ZeroHash, err
			}
			if err := initutil.ShareTree(r.plan.Dest); err != nil {
				return plumbing.ZeroHash, err
			}
			return commit, nil
		}
		if cerr := r.clearDest(); cerr != nil {
			return plumbing.ZeroHash, fmt.Errorf("%s (and cannot clean up: %v)", describe(err, r.url, r.auth != nil), cerr)
		}
		if ctx.Err() != nil {
			return plumbing.ZeroHash, fmt.Errorf("stopped before the clone of %s was complete (%v); nothing was left behind", r.url, context.Cause(ctx))
		}
		if !isTransient(err) {
			return plumbing.ZeroHash, errors.New(describe(err, r.url, r.auth != nil))
		}
		elapsed := time.Since(start)
		if elapsed+backoff > r.opts.RetryBudget {
			return plumbing.ZeroHash, fmt.Errorf("gave up after %d attempts in %s: %s", attempt, elapsed.Round(100*time.Millisecond), describe(err, r.url, r.auth != nil))
		}
		r.logf("attempt %d failed with a transient error, retrying in %s: %s", attempt, backoff, describe(err, r.url, r.auth != nil))
		select {
		case <-ctx.Done():
			return plumbing.ZeroHash, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
		if r.opts.MaxBackoff > 0 && backoff > r.opts.MaxBackoff {
			backoff = r.opts.MaxBackoff
		}
	}
}

// prepareDest makes sure dest exists and is empty. A dest holding a .git
// directory is the leftover of an earlier run of this container (the
// kubelet restarts failed init containers) and is cleared; anything else is
// somebody else's data and is refused. dest is created through an os.Root
// on its allowed root and may not pass through a symlink (one checked out
// by an earlier Git context, say): go-git writes .git by path name.
func (r *run) prepareDest() error {
	dest := r.plan.Dest
	rootDir, rel, err := initutil.SplitUnderRoot(dest, r.opts.Roots, true)
	if err != nil {
		return fmt.Errorf("dest: %w", err)
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", rootDir, err)
	}
	defer root.Close()
	// Refuse a symlink on the way before creating anything, and check
	// again after creating what was missing.
	for _, create := range []bool{false, true} {
		if create {
			if err := root.MkdirAll(rel, 0o775); err != nil {
				return fmt.Errorf("cannot create dest %s: %w", dest, err)
			}
		}
		if err := checkNoSymlink(root, rootDir, rel, dest); err != nil {
			return err
		}
	}
	d, err := root.OpenRoot(rel)
	if err != nil {
		return fmt.Errorf("cannot open dest %s: %w", dest, err)
	}
	r.dest = d
	entries, err := fs.ReadDir(d.FS(), ".")
	if err != nil {
		return fmt.Errorf("cannot read dest %s: %w", dest, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := d.Lstat(".git"); err != nil {
		return fmt.Errorf("dest %s is not empty: a Git context needs a directory of its own", dest)
	}
	return r.clearDest()
}

// checkNoSymlink refuses a dest whose existing components below the root
// include a symlink.
func checkNoSymlink(root *os.Root, rootDir, rel, dest string) error {
	if rel == "." {
		return nil
	}
	p := ""
	for _, el := range strings.Split(rel, "/") {
		p = filepath.Join(p, el)
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot create dest %s: %w", dest, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return &permanentError{fmt.Sprintf("dest %s passes through the symlink %s: choose a mountPath that does not lie inside a symlink of another context", dest, filepath.Join(rootDir, p))}
		}
	}
	return nil
}

// clearDest removes dest's contents but not dest, which may be a mount
// point; the removal stays inside dest whatever the contents.
func (r *run) clearDest() error {
	entries, err := fs.ReadDir(r.dest.FS(), ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := r.dest.RemoveAll(e.Name()); err != nil {
			return err
		}
	}
	return nil
}

// target is what a plan's ref resolved to on the remote.
type target struct {
	kind    string                 // "branch", "tag", "ref" or "commit"
	name    plumbing.ReferenceName // remote ref to fetch; empty for a bare commit
	commit  plumbing.Hash          // wanted commit when the ref was a SHA
	display string
}

// clone is one attempt: init, list the remote, fetch what the ref needs,
// check out. It leaves cleanup to the caller.
func (r *run) clone(ctx context.Context) (plumbing.Hash, error) {
	wt := osfs.New(r.plan.Dest)
	dot, err := wt.Chroot(git.GitDirName)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	st := &packStorage{
		Storage: filesystem.NewStorageWithOptions(dot, cache.NewObjectLRUDefault(), filesystem.Options{}),
		packDir: filepath.Join(r.plan.Dest, git.GitDirName, "objects", "pack"),
	}
	repo, err := git.Init(st, wt)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("cannot initialise %s: %w", r.plan.Dest, err)
	}
	remote, err := repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{r.url}})
	if err != nil {
		return plumbing.ZeroHash, err
	}
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: r.auth, PeelingOption: git.AppendPeeled, ProxyOptions: r.proxy})
	if err != nil {
		return plumbing.ZeroHash, err
	}
	t, err := resolveRef(r.plan.Ref, refs, r.url)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	r.logf("fetching %s of %s (depth %d) into %s", t.display, r.url, r.depth, r.plan.Dest)
	if err := r.fetch(ctx, repo, t); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.checkout(ctx, repo, t)
}

func (r *run) fetch(ctx context.Context, repo *git.Repository, t target) error {
	opts := &git.FetchOptions{
		RemoteName:   remoteName,
		Auth:         r.auth,
		Depth:        r.depth,
		Tags:         git.NoTags,
		ProxyOptions: r.proxy,
	}
	switch t.kind {
	case "branch":
		short := t.name.Short()
		opts.RefSpecs = []config.RefSpec{config.RefSpec(fmt.Sprintf("+%s:refs/remotes/%s/%s", t.name, remoteName, short))}
	case "tag", "ref":
		opts.RefSpecs = []config.RefSpec{config.RefSpec(fmt.Sprintf("+%s:%s", t.name, localName(t.name)))}
	case "commit":
		opts.RefSpecs = []config.RefSpec{config.RefSpec(fmt.Sprintf("%s:%s", t.commit, wantRef))}
		err := repo.FetchContext(ctx, opts)
		if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil
		}
		if isTransient(err) || isAuthError(err) {
			return err
		}
		// The server does not let clients ask for a commit that is not at
		// a ref's tip (uploadpack.allowReachableSHA1InWant is off), or the
		// commit does not exist. Fetch the history of every branch and tag,
		// deeper each time, until the commit turns up: a commit near a tip
		// then costs little more than a shallow clone.
		opts.RefSpecs = []config.RefSpec{
			config.RefSpec(fmt.Sprintf("+refs/heads/*:refs/remotes/%s/*", remoteName)),
			"+refs/tags/*:refs/tags/*",
		}
		steps := []int{0}
		if r.depth > 0 {
			steps = nil
			for _, d := range []int{max(r.depth, 10), 100, 1000, infiniteDepth} {
				if len(steps) == 0 || d > steps[len(steps)-1] {
					steps = append(steps, d)
				}
			}
		}
		r.logf("server refused to send commit %s directly (%v); fetching all branches and tags, deeper until the commit turns up", t.commit, err)
		for _, d := range steps {
			opts.Depth = d
			err := repo.FetchContext(ctx, opts)
			if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
				return err
			}
			if _, err := repo.CommitObject(t.commit); err == nil {
				if d > 0 && d < infiniteDepth {
					r.logf("found commit %s within %d commits of a branch or tag", t.commit, d)
				}
				return nil
			}
		}
		return nil
	}
	err := repo.FetchContext(ctx, opts)
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

// infiniteDepth is what git sends to deepen a shallow clone to its full
// history (`git fetch --unshallow`).
const infiniteDepth = 0x7fffffff

// localName is where a fetched remote ref is stored: branches as
// remote-tracking branches, everything else under its own name.
func localName(name plumbing.ReferenceName) plumbing.ReferenceName {
	if name.IsBranch() {
		return plumbing.NewRemoteReferenceName(remoteName, name.Short())
	}
	return name
}

// wantRef holds a commit fetched by SHA until it is checked out.
const wantRef = "refs/kubeopencode/want"

func (r *run) checkout(ctx context.Context, repo *git.Repository, t target) (plumbing.Hash, error) {
	var commit plumbing.Hash
	switch t.kind {
	case "commit":
		commit = t.commit
	case "branch":
		ref, err := repo.Reference(plumbing.NewRemoteReferenceName(remoteName, t.name.Short()), true)
		if err != nil {
			return commit, fmt.Errorf("branch %s was not fetched: %w", t.name.Short(), err)
		}
		commit = ref.Hash()
	default:
		ref, err := repo.Reference(localName(t.name), true)
		if err != nil {
			return commit, fmt.Errorf("%s was not fetched: %w", t.name, err)
		}
		commit = ref.Hash()
		if tag, err := repo.TagObject(commit); err == nil {
			c, err := tag.Commit()
			if err != nil {
				return commit, fmt.Errorf("tag %s does not point to a commit: %w", t.name.Short(), err)
			}
			commit = c.Hash
		}
	}
	if _, err := repo.CommitObject(commit); err != nil {
		if t.kind == "commit" {
			return commit, &permanentError{fmt.Sprintf("commit %s not found in any branch or tag of %s", t.commit, r.url)}
		}
		return commit, fmt.Errorf("commit %s of %s is missing after fetch: %w", commit, t.display, err)
	}
	_ = repo.Storer.RemoveReference(wantRef)

	if t.kind == "branch" {
		// A local branch that tracks the remote one lets the agent pull,
		// commit and push as in any clone.
		local := plumbing.NewBranchReferenceName(t.name.Short())
		if err := repo.Storer.SetReference(plumbing.NewHashReference(local, commit)); err != nil {
			return commit, err
		}
		if err := repo.CreateBranch(&config.Branch{Name: t.name.Short(), Remote: remoteName, Merge: t.name}); err != nil {
			return commit, err
		}
		if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, local)); err != nil {
			return commit, err
		}
	} else if err := repo.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, commit)); err != nil {
		return commit, err
	}
	if err := r.writeWorktree(ctx, repo, commit); err != nil {
		return commit, fmt.Errorf("cannot check out %s: %w", t.display, err)
	}
	return commit, nil
}

// writeWorktree writes the commit's files and the index.
func (r *run) writeWorktree(ctx context.Context, repo *git.Repository, commit plumbing.Hash) error {
	c, err := repo.CommitObject(commit)
	if err != nil {
		return err
	}
	// The fetch leaves garbage (go-git's pack indexer holds whole
	// objects); collecting it now lets the checkout reuse that memory
	// instead of growing the process.
	runtime.GC()
	start := time.Now()
	packs, err := openPacks(filepath.Join(r.plan.Dest, git.GitDirName))
	if err != nil {
		return err
	}
	defer packs.Close()
	w := &treeWriter{ctx: ctx, objects: repo.Storer, packs: packs, commit: commit, maxBlob: r.maxBlob, memLimit: r.opts.MemoryLimit}
	if err := w.writeTree(r.dest, c.TreeHash); err != nil {
		return err
	}
	if err := repo.Storer.SetIndex(&index.Index{Version: 2, Entries: w.entries}); err != nil {
		return fmt.Errorf("cannot write the index: %w", err)
	}
	r.submodules = w.submodules
	if r.plan.Submodules {
		return r.checkoutSubmodules(ctx, repo, commit)
	}
	for _, s := range w.submodules {
		r.logf("submodule %s (commit %s) is not checked out: its directory is left empty (set the Git context's submodules to true to check it out)", s.Path, s.Commit)
	}
	r.logf("checked out %d files (%s) in %s", w.files, humanBytes(w.bytes), time.Since(start).Round(time.Millisecond))
	return nil
}

// checkPath verifies that plan.Path exists in the checkout.
func (r *run) checkPath(commit plumbing.Hash) error {
	if r.plan.Path == "" {
		return nil
	}
	rel, _ := checkoutRelPath(r.plan.Path)
	ref := r.plan.Ref
	if ref == "" {
		ref = "HEAD"
	}
	where := fmt.Sprintf("repository %s at %s (commit %s)", r.url, ref, commit)
	if !r.plan.Submodules {
		for _, s := range r.submodules {
			if rel == s.Path || strings.HasPrefix(rel, s.Path+"/") {
				return &checkoutError{fmt.Sprintf("path %q in %s lies in submodule %s, which is not checked out: set the Git context's submodules to true, or point path outside the submodule", r.plan.Path, where, s.Path)}
			}
		}
	}
	// The agent mounts this path with subPath; resolving it inside an
	// os.Root tells a symlink out of the checkout from a missing path.
	root, err := os.OpenRoot(r.plan.Dest)
	if err != nil {
		return err
	}
	defer root.Close()
	if _, err := root.Stat(rel); err != nil {
		if _, lerr := root.Lstat(rel); lerr == nil {
			return fmt.Errorf("path %q in %s is a symlink that leads outside the repository or nowhere: fix the Git context's path", r.plan.Path, where)
		}
		return fmt.Errorf("path %q does not exist in %s: fix the Git context's path or ref", r.plan.Path, where)
	}
	return nil
}

// resolveRef decides what ref names on the remote: a branch wins over a
// tag of the same name, as with `git clone --branch`.
func resolveRef(ref string, refs []*plumbing.Reference, url string) (target, error) {
	byName := map[plumbing.ReferenceName]*plumbing.Reference{}
	for _, r := range refs {
		byName[r.Name()] = r
	}
	if ref == "" || ref == "HEAD" {
		head, ok := byName[plumbing.HEAD]
		if !ok {
			return target{}, &permanentError{fmt.Sprintf("%s advertises no HEAD: set the Git context's ref", url)}
		}
		if head.Type() == plumbing.SymbolicReference && head.Target().IsBranch() {
			return target{kind: "branch", name: head.Target(), display: "branch " + head.Target().Short()}, nil
		}
		ref = head.Hash().String()
	}
	if strings.HasPrefix(ref, "refs/") {
		name := plumbing.ReferenceName(ref)
		if _, ok := byName[name]; ok {
			switch {
			case name.IsBranch():
				return target{kind: "branch", name: name, display: "branch " + name.Short()}, nil
			case name.IsTag():
				return target{kind: "tag", name: name, display: "tag " + name.Short()}, nil
			}
			return target{kind: "ref", name: name, display: ref}, nil
		}
	} else {
		if _, ok := byName[plumbing.NewBranchReferenceName(ref)]; ok {
			return target{kind: "branch", name: plumbing.NewBranchReferenceName(ref), display: "branch " + ref}, nil
		}
		if _, ok := byName[plumbing.NewTagReferenceName(ref)]; ok {
			return target{kind: "tag", name: plumbing.NewTagReferenceName(ref), display: "tag " + ref}, nil
		}
	}
	if isFullSHA(ref) {
		h := plumbing.NewHash(strings.ToLower(ref))
		// A commit at the tip of a branch or tag is fetched through that
		// ref, which every server allows, and stays shallow.
		for _, r := range refs {
			name := plumbing.ReferenceName(strings.TrimSuffix(r.Name().String(), "^{}"))
			if r.Type() != plumbing.HashReference || r.Hash() != h || !(name.IsBranch() || name.IsTag()) {
				continue
			}
			kind := "tag"
			if name.IsBranch() {
				kind = "ref" // fetch the branch but leave HEAD detached at the SHA
			}
			return target{kind: kind, name: name, commit: h, display: "commit " + ref}, nil
		}
		return target{kind: "commit", commit: h, display: "commit " + ref}, nil
	}
	hint := ""
	if len(ref) >= 4 && len(ref) < 40 && isHex(ref) {
		hint = " (a commit must be given as its full 40-character SHA)"
	}
	return target{}, &permanentError{fmt.Sprintf("ref %q not found in %s: no branch, tag or commit of that name%s", ref, url, hint)}
}

func isFullSHA(s string) bool { return len(s) == 40 && isHex(s) }

func isHex(s string) bool {
	for _, c := range strings.ToLower(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
