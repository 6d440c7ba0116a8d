// Package gitfacts reads what an agent left in the Git checkouts it worked
// in: the commit HEAD points to, whether the worktree holds uncommitted
// changes, how much changed against the commit the agent started from and
// which branches it pushed to the origin remote (contract.RepositoryResult).
//
// It runs the git executable, in each checkout, without changing it:
//
//   - every command runs with -c core.fsmonitor=false and
//     -c core.hooksPath=/dev/null (no program of the repository's
//     configuration or hooks runs for a read), GIT_TERMINAL_PROMPT=0 (no
//     prompt for credentials), GIT_OPTIONAL_LOCKS=0 (git status does not
//     refresh the index), without the caller's GIT_DIR and GIT_INDEX_FILE,
//     and under a timeout (ls-remote, which talks to the remote: 60 s;
//     others: 30 s);
//   - the diff counts take untracked files (not ignored ones) as added,
//     as `git add -A && git diff --cached --shortstat BASE` would, without
//     touching the agent's index: the index is copied to a temporary file
//     (GIT_INDEX_FILE), the untracked files are recorded in that copy as
//     intent-to-add (git add -N: no object is written) and
//     `git diff --shortstat BASE` compares the worktree, seen through the
//     copy, with BASE. git status reads the copy too.
//
// Only the origin remote's branches are asked for (git ls-remote --heads
// origin). A branch counts as pushed by the agent when its tip on the
// remote is a commit the checkout has, reachable from HEAD or a local
// branch and not from the Base, whose committer date is not before Start
// ran: a commit made during the run. A branch the agent pushed without a
// new commit (at Base, or at a commit that was there before, such as a
// branch it fetched and checked out) is not reported.
package gitfacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

// MaxRepositories is the most Git contexts reported on.
const MaxRepositories = 64

// MaxError is the longest Error of a RepositoryResult.
const MaxError = 1024

// NoGitFacts is the Error of a Git context that mounts only a path inside
// its repository.
const NoGitFacts = "only a path of the repository is mounted: no Git facts"

// Timeouts of the git commands.
var (
	CommandTimeout = 30 * time.Second
	RemoteTimeout  = 60 * time.Second
)

// ParseContexts reads the value of contract.EnvGitContexts: none when it is
// empty. At most MaxRepositories contexts are returned; more is an error
// that comes with the first MaxRepositories.
func ParseContexts(value string) ([]contract.GitContext, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	var contexts []contract.GitContext
	if err := json.Unmarshal([]byte(value), &contexts); err != nil {
		return nil, fmt.Errorf("%s is not a JSON array of Git contexts: %v", contract.EnvGitContexts, err)
	}
	if len(contexts) > MaxRepositories {
		return contexts[:MaxRepositories], fmt.Errorf("%s lists %d Git contexts: reporting on the first %d", contract.EnvGitContexts, len(contexts), MaxRepositories)
	}
	return contexts, nil
}

// Run is a set of checkouts whose Base was recorded before the agent ran.
type Run struct {
	repos []*repo
	// started is when Start ran: the agent's commits are not older.
	started time.Time
}

type repo struct {
	ctx     contract.GitContext
	base    string
	baseErr string
}

// Start records the Base (git rev-parse HEAD) of every checkout of
// contexts (at most MaxRepositories); call it before the agent runs.
func Start(ctx context.Context, contexts []contract.GitContext) *Run {
	if len(contexts) > MaxRepositories {
		contexts = contexts[:MaxRepositories]
	}
	r := &Run{started: time.Now()}
	for _, c := range contexts {
		rp := &repo{ctx: c}
		if c.Checkout {
			out, err := git(ctx, c.MountPath, nil, CommandTimeout, "rev-parse", "--verify", "HEAD^{commit}")
			if err != nil {
				rp.baseErr = "the commit the agent started from is unknown: " + err.Error()
			} else {
				rp.base = strings.TrimSpace(out)
			}
		}
		r.repos = append(r.repos, rp)
	}
	return r
}

// Results reads the facts of every checkout, in the order of the contexts
// given to Start; call it after the agent ended.
func (r *Run) Results(ctx context.Context) []contract.RepositoryResult {
	var out []contract.RepositoryResult
	for _, rp := range r.repos {
		out = append(out, rp.facts(ctx, r.started))
	}
	return out
}

func (rp *repo) facts(ctx context.Context, started time.Time) (res contract.RepositoryResult) {
	res = contract.RepositoryResult{MountPath: rp.ctx.MountPath, Base: rp.base}
	if !rp.ctx.Checkout {
		res.Error = NoGitFacts
		return res
	}
	dir := rp.ctx.MountPath
	var problems []string
	if rp.baseErr != "" {
		problems = append(problems, rp.baseErr)
	}
	defer func() { res.Error = bound(strings.Join(problems, "; ")) }()

	if out, err := git(ctx, dir, nil, CommandTimeout, "rev-parse", "--verify", "HEAD^{commit}"); err != nil {
		problems = append(problems, "HEAD is unknown: "+err.Error())
	} else {
		res.Head = strings.TrimSpace(out)
	}

	// Everything that reads the index reads a copy of it.
	index, cleanup, err := copyIndex(ctx, dir)
	if err != nil {
		problems = append(problems, err.Error())
		return res
	}
	defer cleanup()
	env := []string{"GIT_INDEX_FILE=" + index}

	if out, err := git(ctx, dir, env, CommandTimeout, "status", "--porcelain", "--untracked-files=normal"); err != nil {
		problems = append(problems, err.Error())
	} else {
		res.Dirty = strings.TrimSpace(out) != ""
	}

	if rp.base != "" {
		if err := diffCounts(ctx, dir, env, rp.base, &res); err != nil {
			problems = append(problems, err.Error())
		}
		branches, err := pushedBranches(ctx, dir, rp.base, res.Head, started)
		res.PushedBranches = branches
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	return res
}

// copyIndex copies the checkout's index to a temporary file; no index
// (a checkout without one) is an empty copy.
func copyIndex(ctx context.Context, dir string) (string, func(), error) {
	out, err := git(ctx, dir, nil, CommandTimeout, "rev-parse", "--git-path", "index")
	if err != nil {
		return "", nil, err
	}
	src := strings.TrimSpace(out)
	if !filepath.IsAbs(src) {
		src = filepath.Join(dir, src)
	}
	tmp, err := os.MkdirTemp("", "gitfacts-")
	if err != nil {
		return "", nil, fmt.Errorf("cannot copy the index: %v", err)
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	dst := filepath.Join(tmp, "index")
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return dst, cleanup, nil
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("cannot copy the index: %v", err)
	}
	defer in.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = io.Copy(f, in)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("cannot copy the index: %v", err)
	}
	return dst, cleanup, nil
}

// diffCounts fills the diff counts of the worktree against base, untracked
// files included, recording them as intent-to-add in the index copy of env.
func diffCounts(ctx context.Context, dir string, env []string, base string, res *contract.RepositoryResult) error {
	untracked, err := git(ctx, dir, env, CommandTimeout, "ls-files", "-z", "--others", "--exclude-standard")
	if err != nil {
		return err
	}
	if untracked != "" {
		// The names are paths, not pathspecs: git add takes a file named
		// ":w" (an editor's stray save) for pathspec magic and fails.
		if _, err := gitInput(ctx, dir, append(env, "GIT_LITERAL_PATHSPECS=1"), CommandTimeout, strings.NewReader(untracked),
			"add", "--intent-to-add", "--pathspec-from-file=-", "--pathspec-file-nul"); err != nil {
			return fmt.Errorf("untracked files not counted: %v", err)
		}
	}
	out, err := git(ctx, dir, env, CommandTimeout, "diff", "--shortstat", "--no-ext-diff", "--no-textconv", base, "--")
	if err != nil {
		return err
	}
	res.FilesChanged, res.Insertions, res.Deletions = parseShortstat(out)
	return nil
}

var shortstatPart = regexp.MustCompile(`(\d+) (file|insertion|deletion)`)

// parseShortstat reads " 3 files changed, 10 insertions(+), 2 deletions(-)".
func parseShortstat(s string) (files, insertions, deletions int64) {
	for _, m := range shortstatPart.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		switch m[2] {
		case "file":
			files = n
		case "insertion":
			insertions = n
		case "deletion":
			deletions = n
		}
	}
	return files, insertions, deletions
}

// pushedBranches lists the origin branches whose tips are commits made
// during the run: reachable from HEAD or a local branch, not from base,
// and committed since started (a branch the agent fetched and checked out
// holds commits not reachable from base that it did not make).
func pushedBranches(ctx context.Context, dir, base, head string, started time.Time) ([]contract.PushedBranch, error) {
	remote, err := git(ctx, dir, nil, RemoteTimeout, "ls-remote", "--heads", "origin")
	if err != nil {
		return nil, fmt.Errorf("git ls-remote origin failed: %v", err)
	}
	// Commit dates have whole seconds.
	args := []string{"rev-list", "--max-age=" + strconv.FormatInt(started.Unix(), 10), "--branches"}
	if head != "" {
		args = append(args, head)
	}
	args = append(args, "--not", base, "--")
	out, err := git(ctx, dir, nil, CommandTimeout, args...)
	if err != nil {
		return nil, err
	}
	made := map[string]bool{}
	for _, c := range strings.Fields(out) {
		made[c] = true
	}
	var branches []contract.PushedBranch
	more := 0
	for _, line := range strings.Split(remote, "\n") {
		commit, ref, ok := strings.Cut(strings.TrimSpace(line), "\t")
		name, isHead := strings.CutPrefix(ref, "refs/heads/")
		if !ok || !isHead || !made[commit] {
			continue
		}
		if len(branches) == contract.MaxPushedBranches {
			more++
			continue
		}
		branches = append(branches, contract.PushedBranch{Name: name, Commit: commit})
	}
	if more > 0 {
		return branches, fmt.Errorf("%d more pushed branches not listed (at most %d are)", more, contract.MaxPushedBranches)
	}
	return branches, nil
}

// hardening is given to every git command.
var hardening = []string{"-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.splitIndex=false"}

// scrubbed are the caller's variables that would point git elsewhere.
var scrubbed = map[string]bool{
	"GIT_DIR": true, "GIT_WORK_TREE": true, "GIT_INDEX_FILE": true, "GIT_COMMON_DIR": true,
	"GIT_OBJECT_DIRECTORY": true, "GIT_ALTERNATE_OBJECT_DIRECTORIES": true, "GIT_NAMESPACE": true,
	"GIT_PREFIX": true, "GIT_TERMINAL_PROMPT": true, "GIT_OPTIONAL_LOCKS": true, "LC_ALL": true,
	"GIT_LITERAL_PATHSPECS": true, "GIT_GLOB_PATHSPECS": true, "GIT_NOGLOB_PATHSPECS": true, "GIT_ICASE_PATHSPECS": true,
}

func git(ctx context.Context, dir string, env []string, timeout time.Duration, args ...string) (string, error) {
	return gitInput(ctx, dir, env, timeout, nil, args...)
}

// gitInput runs git in dir and returns its stdout; the error says which
// command failed, with its stderr (bounded, URL userinfo removed).
func gitInput(ctx context.Context, dir string, env []string, timeout time.Duration, stdin io.Reader, args ...string) (string, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append(append([]string{}, hardening...), args...)...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	// git talks to a remote through a helper process (git-remote-https)
	// that holds its output open: stopping git alone would leave the
	// helper, stalled on the network, and make Wait wait for WaitDelay.
	// git and its helpers get a process group of their own, stopped whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !scrubbed[name] {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C")
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		switch {
		case parent.Err() != nil:
			msg = "stopped: " + context.Cause(parent).Error()
		case ctx.Err() != nil:
			msg = fmt.Sprintf("timed out after %s", timeout)
		case msg == "":
			msg = err.Error()
		}
		return "", fmt.Errorf("git %s: %s", args[0], StripUserinfo(msg))
	}
	return stdout.String(), nil
}

var userinfo = regexp.MustCompile(`\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]+@`)

// StripUserinfo replaces the userinfo of the URLs in s with [redacted], up
// to the last "@" before the host (a password may hold an unencoded "@"):
// git names the remote's URL, credentials included, in its errors.
func StripUserinfo(s string) string {
	return userinfo.ReplaceAllString(s, "${1}[redacted]@")
}

// bound cuts s to MaxError bytes at a character boundary, on one line.
func bound(s string) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
	return contract.TruncateUTF8(s, MaxError)
}
