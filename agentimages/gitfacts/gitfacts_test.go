package gitfacts_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/agentimages/gitfacts"
	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/internal/gittest"
	"github.com/kubeopencode/kubeopencode/internal/nettest"
)

const (
	gitUser     = "agent"
	gitPassword = "s3cret-push-token-7f3a9c"
	// passwordEnv holds the password in the agent's environment; the
	// checkout's credential helper reads it from there, as an agent's
	// configuration does.
	passwordEnv = "AGENT_GIT_PASSWORD"
	// credentialHelper answers git's credential requests from passwordEnv.
	credentialHelper = `!f() { test "$1" = get && echo username=` + gitUser + ` && echo "password=$` + passwordEnv + `"; }; f`
)

// hermetic keeps the user's and the system's Git configuration away from
// both the test's git commands and gitfacts' own.
func hermetic(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null")
	t.Setenv(passwordEnv, gitPassword)
}

// agentGit runs git in dir as the agent does: with the current date, so
// that its commits are made during the run, and the test's identity.
func agentGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return gitWith(t, dir, nil, args...)
}

// gitWith runs git in dir with env added to the agent's environment.
func gitWith(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(),
		"GIT_AUTHOR_NAME=Agent", "GIT_AUTHOR_EMAIL=agent@example.com",
		"GIT_COMMITTER_NAME=Agent", "GIT_COMMITTER_EMAIL=agent@example.com"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "git %s: %s", strings.Join(args, " "), stderr.String())
	return strings.TrimSpace(string(out))
}

// checkout is a Git context's checkout, cloned from a served repository.
type checkout struct {
	dir    string // the checkout (the Git context's mount path)
	remote string // origin's URL, without credentials
	base   string // the commit checked out
}

func (c *checkout) contexts() []contract.GitContext {
	return []contract.GitContext{{MountPath: c.dir, Repository: c.remote, Checkout: true}}
}

// clone clones branch main of the repository below srv as git-init does
// (that branch only, no tags, the remote's URL without credentials) and
// configures the agent's credentials.
func clone(t *testing.T, srv *gittest.HTTPServer, name string) *checkout {
	t.Helper()
	c := &checkout{dir: filepath.Join(t.TempDir(), "ws"), remote: srv.URL + "/" + name}
	agentGit(t, filepath.Dir(c.dir), "-c", "credential.helper="+credentialHelper,
		"clone", "-q", "--single-branch", "--no-tags", "--branch", "main", c.remote, c.dir)
	agentGit(t, c.dir, "config", "credential.helper", credentialHelper)
	c.base = agentGit(t, c.dir, "rev-parse", "HEAD")
	return c
}

// servedRepo serves gittest's repository with push and basic auth.
func servedRepo(t *testing.T) (*gittest.Repo, *gittest.HTTPServer) {
	t.Helper()
	hermetic(t)
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{Username: gitUser, Password: gitPassword, Push: true})
	return repo, srv
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

// results runs Results for the checkout and returns its one result.
func results(t *testing.T, run *gitfacts.Run) contract.RepositoryResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := run.Results(ctx)
	require.Len(t, res, 1)
	return res[0]
}

// shortstat is git's own `git diff --shortstat base` in dir.
func shortstat(t *testing.T, dir, base string) string {
	t.Helper()
	return agentGit(t, dir, "diff", "--shortstat", base)
}

func formatShortstat(r contract.RepositoryResult) string {
	plural := func(n int64, one, many string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, one)
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	s := plural(r.FilesChanged, "file changed", "files changed")
	if r.Insertions > 0 {
		s += ", " + plural(r.Insertions, "insertion(+)", "insertions(+)")
	}
	if r.Deletions > 0 {
		s += ", " + plural(r.Deletions, "deletion(-)", "deletions(-)")
	}
	return s
}

func TestCommittedAndPushedWork(t *testing.T) {
	repo, srv := servedRepo(t)
	c := clone(t, srv, repo.Name)
	run := gitfacts.Start(context.Background(), c.contexts())

	write(t, c.dir, "README.md", "# test repository\n\nHow to build it.\n")
	write(t, c.dir, "history.txt", strings.Repeat("line\n", 3))
	write(t, c.dir, "src/main.go", "package main\n\nfunc main() {}\n")
	agentGit(t, c.dir, "add", "-A")
	agentGit(t, c.dir, "commit", "-q", "-m", "Document the build")
	head := agentGit(t, c.dir, "rev-parse", "HEAD")
	agentGit(t, c.dir, "push", "-q", "origin", "HEAD:refs/heads/agent/document-build")

	r := results(t, run)
	assert.Empty(t, r.Error)
	assert.Equal(t, c.dir, r.MountPath)
	assert.Equal(t, repo.Main[len(repo.Main)-1], r.Base)
	assert.Equal(t, head, r.Head)
	assert.False(t, r.Dirty, "everything is committed")
	assert.Equal(t, shortstat(t, c.dir, c.base), formatShortstat(r))
	assert.Equal(t, [3]int64{3, 5, 2}, [3]int64{r.FilesChanged, r.Insertions, r.Deletions})
	assert.Equal(t, []contract.PushedBranch{{Name: "agent/document-build", Commit: head}}, r.PushedBranches)
}

func TestUncommittedWorkLeavesTheIndexAlone(t *testing.T) {
	repo, srv := servedRepo(t)
	c := clone(t, srv, repo.Name)
	run := gitfacts.Start(context.Background(), c.contexts())

	write(t, c.dir, "docs/guide.md", "guide\nwith a second line\n")
	// Untracked: one whose name is a glob pattern (a Next.js route), one
	// whose name starts like a pathspec's magic (an editor's stray save),
	// and one ignored.
	write(t, c.dir, "notes.txt", "one\ntwo\nthree\n")
	write(t, c.dir, "app/[id]/page.tsx", "export default function Page() {}\n")
	write(t, c.dir, ":w", "stray\n")
	write(t, c.dir, ".gitignore", "*.log\n")
	write(t, c.dir, "build.log", "ignored\nignored\n")
	index := filepath.Join(c.dir, ".git", "index")
	before, err := os.ReadFile(index)
	require.NoError(t, err)
	status := agentGit(t, c.dir, "status", "--porcelain")

	r := results(t, run)
	assert.Empty(t, r.Error)
	assert.True(t, r.Dirty)
	assert.Equal(t, c.base, r.Head)
	assert.Equal(t, []int64{5, 7, 0}, []int64{r.FilesChanged, r.Insertions, r.Deletions},
		"the edit and the four untracked files that are not ignored")
	assert.Empty(t, r.PushedBranches)

	after, err := os.ReadFile(index)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the agent's index is not touched")
	assert.Equal(t, status, agentGit(t, c.dir, "status", "--porcelain"))

	// What git itself counts once everything is added.
	agentGit(t, c.dir, "add", "-A")
	assert.Equal(t, agentGit(t, c.dir, "diff", "--cached", "--shortstat", c.base), formatShortstat(r))
}

func TestBranchesTheAgentDidNotMakeAreNotPushed(t *testing.T) {
	repo, srv := servedRepo(t)
	// A colleague's branch, committed an hour before the agent started.
	colleague := clone(t, srv, repo.Name)
	write(t, colleague.dir, "docs/guide.md", "guide\nby a colleague\n")
	hourAgo := "GIT_COMMITTER_DATE=" + time.Now().Add(-time.Hour).Format(time.RFC3339)
	gitWith(t, colleague.dir, []string{hourAgo, "GIT_COMMITTER_NAME=Colleague"}, "commit", "-q", "-am", "Extend the guide")
	theirs := agentGit(t, colleague.dir, "rev-parse", "HEAD")
	agentGit(t, colleague.dir, "push", "-q", "origin", "HEAD:refs/heads/colleague/guide")

	c := clone(t, srv, repo.Name)
	run := gitfacts.Start(context.Background(), c.contexts())
	// A branch pushed at the commit the agent started from, and the
	// colleague's branch, which the agent checked out and pushed again as
	// it was.
	agentGit(t, c.dir, "push", "-q", "origin", "HEAD:refs/heads/agent/no-change")
	agentGit(t, c.dir, "fetch", "-q", "origin", "refs/heads/colleague/guide:refs/heads/colleague/guide")
	agentGit(t, c.dir, "switch", "-q", "colleague/guide")
	agentGit(t, c.dir, "push", "-q", "origin", "HEAD:refs/heads/agent/guide-copy")

	r := results(t, run)
	assert.Empty(t, r.Error)
	assert.Equal(t, theirs, r.Head)
	assert.Empty(t, r.PushedBranches, "no branch points at a commit the agent made")

	// Once the agent commits on it, the branch it pushes is its own.
	write(t, c.dir, "docs/guide.md", "guide\nby a colleague\nand the agent\n")
	agentGit(t, c.dir, "commit", "-q", "-am", "Improve the guide")
	head := agentGit(t, c.dir, "rev-parse", "HEAD")
	agentGit(t, c.dir, "push", "-q", "origin", "HEAD:refs/heads/colleague/guide")
	r = results(t, run)
	assert.Equal(t, []contract.PushedBranch{{Name: "colleague/guide", Commit: head}}, r.PushedBranches)
}

func TestUnreachableOrRefusingRemote(t *testing.T) {
	repo, srv := servedRepo(t)
	for _, tc := range []struct {
		name string
		// origin is the remote's URL the agent left, credentials in it.
		origin func() string
		want   string
	}{
		{"wrong password", func() string {
			u, _ := url.Parse(srv.URL + "/" + repo.Name)
			u.User = url.UserPassword(gitUser, "wr0ng-p@ss:word-1234")
			return u.String()
		}, "git ls-remote origin failed"},
		// git names this URL in its error as it is, and a URL parser takes
		// the userinfo up to the last "@".
		{"password with an unencoded at sign", func() string {
			return "http://" + gitUser + ":p@ss-" + gitPassword + "@" + nettest.ClosedPort(t) + "/" + repo.Name
		}, "git ls-remote origin failed"},
		{"nothing listening", func() string {
			return "http://" + gitUser + ":" + gitPassword + "@" + nettest.ClosedPort(t) + "/" + repo.Name
		}, "git ls-remote origin failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := clone(t, srv, repo.Name)
			run := gitfacts.Start(context.Background(), c.contexts())
			write(t, c.dir, "README.md", "# changed\n")
			agentGit(t, c.dir, "commit", "-q", "-am", "Change the README")
			head := agentGit(t, c.dir, "rev-parse", "HEAD")
			origin := tc.origin()
			agentGit(t, c.dir, "config", "--unset", "credential.helper")
			agentGit(t, c.dir, "remote", "set-url", "origin", origin)

			r := results(t, run)
			assert.Contains(t, r.Error, tc.want)
			u, err := url.Parse(origin)
			require.NoError(t, err)
			password, _ := u.User.Password()
			for _, secret := range []string{password, url.QueryEscape(password), gitPassword, "word-1234"} {
				assert.NotContains(t, r.Error, secret)
			}
			assert.LessOrEqual(t, len(r.Error), gitfacts.MaxError)
			// The facts that need no remote are all there.
			assert.Equal(t, c.base, r.Base)
			assert.Equal(t, head, r.Head)
			assert.False(t, r.Dirty)
			assert.Equal(t, []int64{1, 1, 1}, []int64{r.FilesChanged, r.Insertions, r.Deletions})
			assert.Empty(t, r.PushedBranches)
		})
	}
}

func TestLargeFileStoredAsDelta(t *testing.T) {
	hermetic(t)
	gen := gittest.NewTextGen(7)
	lines := gen.Lines(20000, "src")
	var fi gittest.FastImport
	v1 := fi.Blob(gittest.Join(lines))
	first := fi.Commit("refs/heads/main", "", "Add the generated source", []gittest.FileOp{
		{Path: "gen/big.go", Mode: "100644", Ref: v1},
		{Path: "README.md", Mode: "100644", Ref: fi.Blob([]byte("# big\n"))},
	})
	v2 := fi.Blob(gittest.Join(gen.Shuffle(lines, 200, 50)))
	fi.Commit("refs/heads/main", first, "Reorder the generated source", []gittest.FileOp{{Path: "gen/big.go", Mode: "100644", Ref: v2}})
	root := t.TempDir()
	bare := filepath.Join(root, "big.git")
	fi.Import(t, bare)
	gittest.Git(t, bare, "repack", "-a", "-d", "-q", "--depth=50", "--window=50")
	require.NotEmpty(t, gittest.PackDeltas(t, bare), "the repository stores deltas")
	srv := gittest.NewHTTPServer(t, root, gittest.HTTPOptions{Username: gitUser, Password: gitPassword, Push: true})
	c := clone(t, srv, "big.git")
	run := gitfacts.Start(context.Background(), c.contexts())

	// The agent reorders and edits the large file again, and deletes a
	// block of it.
	data, err := os.ReadFile(filepath.Join(c.dir, "gen/big.go"))
	require.NoError(t, err)
	current := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	edited := gen.Shuffle(current, 150, 40)
	edited = append(edited[:5000], edited[5600:]...)
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "gen/big.go"), gittest.Join(edited), 0o644))

	r := results(t, run)
	assert.Empty(t, r.Error)
	assert.True(t, r.Dirty)
	assert.Equal(t, shortstat(t, c.dir, c.base), formatShortstat(r))
	assert.Equal(t, int64(1), r.FilesChanged)
	assert.Greater(t, r.Deletions, int64(600))
}

func TestParseContexts(t *testing.T) {
	got, err := gitfacts.ParseContexts("")
	assert.NoError(t, err)
	assert.Empty(t, got)

	_, err = gitfacts.ParseContexts(`{"mountPath": "/workspace/repo"}`)
	assert.ErrorContains(t, err, contract.EnvGitContexts+" is not a JSON array of Git contexts")

	_, err = gitfacts.ParseContexts(`[{"mountPath": "/workspace/repo", "checkout": tru`)
	assert.Error(t, err)

	got, err = gitfacts.ParseContexts(`[{"mountPath":"/workspace/repo","repository":"https://github.com/o/r","checkout":true},{"mountPath":"/workspace/docs","repository":"https://github.com/o/d"}]`)
	require.NoError(t, err)
	assert.Equal(t, []contract.GitContext{
		{MountPath: "/workspace/repo", Repository: "https://github.com/o/r", Checkout: true},
		{MountPath: "/workspace/docs", Repository: "https://github.com/o/d"},
	}, got)

	var many []string
	for i := range gitfacts.MaxRepositories + 3 {
		many = append(many, fmt.Sprintf(`{"mountPath":"/workspace/r%d","checkout":true}`, i))
	}
	got, err = gitfacts.ParseContexts("[" + strings.Join(many, ",") + "]")
	assert.ErrorContains(t, err, fmt.Sprintf("lists %d Git contexts", gitfacts.MaxRepositories+3))
	assert.Len(t, got, gitfacts.MaxRepositories, "the first ones are still reported on")
}

func TestPathOnlyContextHasNoGitFacts(t *testing.T) {
	repo, srv := servedRepo(t)
	c := clone(t, srv, repo.Name)
	// The Git context mounts docs/ only: there is a repository above it,
	// but its facts are not the context's.
	contexts := []contract.GitContext{
		{MountPath: filepath.Join(c.dir, "docs"), Repository: c.remote},
		{MountPath: c.dir, Repository: c.remote, Checkout: true},
	}
	run := gitfacts.Start(context.Background(), contexts)
	write(t, c.dir, "docs/guide.md", "changed\n")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := run.Results(ctx)
	require.Len(t, res, 2)
	assert.Equal(t, contract.RepositoryResult{MountPath: contexts[0].MountPath, Error: gitfacts.NoGitFacts}, res[0])
	assert.Equal(t, c.dir, res[1].MountPath)
	assert.True(t, res[1].Dirty)
	assert.Equal(t, c.base, res[1].Base)
}

func TestStalledRemoteIsBoundedByTheContext(t *testing.T) {
	hermetic(t)
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{Username: gitUser, Password: gitPassword, Push: true})
	c := clone(t, srv, repo.Name)
	run := gitfacts.Start(context.Background(), c.contexts())
	write(t, c.dir, "README.md", "# changed\n")
	// The remote stops answering: origin now points at a server that
	// accepts the connection and never sends the refs.
	stalled := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{Username: gitUser, Password: gitPassword, Stall: true})
	agentGit(t, c.dir, "remote", "set-url", "origin", stalled.URL+"/"+repo.Name)

	const deadline = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	res := run.Results(ctx)
	took := time.Since(start)
	require.Len(t, res, 1)
	assert.Less(t, took, deadline+time.Second, "Results ends soon after its context does")
	assert.Positive(t, stalled.Stalls.Load(), "the remote did stall")
	assert.Contains(t, res[0].Error, "git ls-remote origin failed")
	assert.Contains(t, res[0].Error, "stopped: "+context.DeadlineExceeded.Error(), "the error says why")
	assert.True(t, res[0].Dirty, "the local facts were read before the remote stalled")
	assert.Equal(t, c.base, res[0].Head)
}
