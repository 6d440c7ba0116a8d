package gitinit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/internal/gittest"
	"github.com/kubeopencode/kubeopencode/internal/nettest"
)

// harness runs plans against a workspace root in a temporary directory.
type harness struct {
	t    *testing.T
	root string
	log  bytes.Buffer
	opts Options
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, root: t.TempDir()}
	h.opts = DefaultOptions()
	h.opts.Roots = []string{h.root}
	h.opts.RetryBudget = 1500 * time.Millisecond
	h.opts.InitialBackoff = 100 * time.Millisecond
	h.opts.MaxBackoff = 400 * time.Millisecond
	h.opts.DialTimeout = 2 * time.Second
	h.opts.Log = &h.log
	return h
}

func (h *harness) plan(repository, ref string, depth int) *contract.GitPlan {
	return &contract.GitPlan{
		Version:    contract.Version,
		Repository: repository,
		Ref:        ref,
		Depth:      depth,
		Dest:       filepath.Join(h.root, "checkout"),
	}
}

func (h *harness) run(p *contract.GitPlan) (contract.Result, error) {
	h.t.Helper()
	return Run(context.Background(), p, h.opts)
}

// secret writes a credentials directory shaped like a mounted Secret.
func (h *harness) secret(kv map[string]string) string {
	h.t.Helper()
	dir := filepath.Join(h.t.TempDir(), "secret")
	require.NoError(h.t, os.MkdirAll(dir, 0o755))
	for k, v := range kv {
		require.NoError(h.t, os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600))
	}
	return dir
}

func commitCount(t *testing.T, dir string) int {
	n, err := strconv.Atoi(gittest.Git(t, dir, "rev-list", "--count", "HEAD"))
	require.NoError(t, err)
	return n
}

// assertCleanCheckout checks with the git CLI that dest is a valid
// repository at want whose worktree matches the commit.
func assertCleanCheckout(t *testing.T, dest, want string) {
	t.Helper()
	assert.Equal(t, want, gittest.Git(t, dest, "rev-parse", "HEAD"))
	assert.Empty(t, gittest.Git(t, dest, "status", "--porcelain"), "worktree differs from the commit")
	gittest.Git(t, dest, "fsck", "--connectivity-only", "--no-progress")
}

func TestRefsOverHTTP(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	plain := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{})
	allowSHA := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{AllowReachableSHA1: true})

	cases := []struct {
		name        string
		server      *gittest.HTTPServer
		ref         string
		depth       int
		want        string
		commits     int
		branch      string // expected symbolic HEAD, "" for detached
		logContains string
	}{
		{name: "remote HEAD", server: plain, ref: "", depth: 0, want: repo.Main[4], commits: 5, branch: "main"},
		{name: "branch", server: plain, ref: "feature", depth: 0, want: repo.Feature, commits: 4, branch: "feature"},
		{name: "full branch ref", server: plain, ref: "refs/heads/feature", depth: 1, want: repo.Feature, commits: 1, branch: "feature"},
		{name: "pull request ref", server: plain, ref: "refs/pull/1/head", depth: 2, want: repo.Feature, commits: 2},
		{name: "lightweight tag", server: plain, ref: repo.LightTag, depth: 0, want: repo.Main[1], commits: 2},
		{name: "annotated tag", server: plain, ref: repo.AnnotatedTag, depth: 0, want: repo.Main[2], commits: 3},
		{name: "annotated tag shallow", server: plain, ref: repo.AnnotatedTag, depth: 2, want: repo.Main[2], commits: 2},
		{name: "SHA at branch tip", server: plain, ref: repo.Main[4], depth: 1, want: repo.Main[4], commits: 1},
		{name: "SHA at annotated tag", server: plain, ref: repo.Main[2], depth: 1, want: repo.Main[2], commits: 1},
		{name: "SHA not at tip, server allows it", server: allowSHA, ref: repo.Main[3], depth: 1, want: repo.Main[3], commits: 1},
		{name: "SHA not at tip, server refuses it", server: plain, ref: repo.Main[3], depth: 1, want: repo.Main[3], commits: 4, logContains: "fetching all branches and tags"},
		{name: "upper-case SHA", server: allowSHA, ref: strings.ToUpper(repo.Main[0]), depth: 0, want: repo.Main[0], commits: 1},
		{name: "depth 1", server: plain, ref: "main", depth: 1, want: repo.Main[4], commits: 1, branch: "main"},
		{name: "depth 3", server: plain, ref: "main", depth: 3, want: repo.Main[4], commits: 3, branch: "main"},
		{name: "depth larger than history", server: plain, ref: "main", depth: 50, want: repo.Main[4], commits: 5, branch: "main"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			p := h.plan(tc.server.URL+"/repo.git", tc.ref, tc.depth)
			res, err := h.run(p)
			require.NoError(t, err, h.log.String())
			assert.Equal(t, tc.want, res.Commit)
			assert.Equal(t, tc.server.URL+"/repo.git", res.Repository)
			assertCleanCheckout(t, p.Dest, tc.want)
			assert.Equal(t, tc.commits, commitCount(t, p.Dest))
			if tc.branch != "" {
				assert.Equal(t, "refs/heads/"+tc.branch, gittest.Git(t, p.Dest, "symbolic-ref", "HEAD"))
				assert.Equal(t, "origin/"+tc.branch, gittest.Git(t, p.Dest, "rev-parse", "--abbrev-ref", tc.branch+"@{upstream}"))
			} else {
				assert.Equal(t, "HEAD", gittest.Git(t, p.Dest, "rev-parse", "--abbrev-ref", "HEAD"), "HEAD should be detached")
			}
			if tc.logContains != "" {
				assert.Contains(t, h.log.String(), tc.logContains)
			}
		})
	}
}

func TestMissingRefsAndRepositories(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{AllowReachableSHA1: true})
	cases := []struct {
		name, repository, ref, want string
	}{
		{"missing branch", srv.URL + "/repo.git", "no-such-branch", `ref "no-such-branch" not found in ` + srv.URL + "/repo.git"},
		{"short SHA", srv.URL + "/repo.git", repo.Main[1][:8], "full 40-character SHA"},
		{"missing commit", srv.URL + "/repo.git", strings.Repeat("ab", 20), "commit " + strings.Repeat("ab", 20) + " not found in any branch or tag of " + srv.URL + "/repo.git"},
		{"missing repository", srv.URL + "/nope.git", "", "repository " + srv.URL + "/nope.git not found"},
		{"unsupported scheme", "file:///etc", "", `only https://, http://, ssh://`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			p := h.plan(tc.repository, tc.ref, 1)
			p.Description = `Git context "src"`
			_, err := h.run(p)
			require.Error(t, err)
			t.Log(err)
			assert.NotContains(t, h.log.String(), "retrying", "a permanent error must not be retried")
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), `Git context "src": `), err.Error())
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestPathInCheckout(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{})
	for _, path := range []string{"docs/guide.md", "docs", "docs/nested/", "link-to-readme", "link-to-docs/guide.md", "/docs"} {
		t.Run("exists "+path, func(t *testing.T) {
			h := newHarness(t)
			p := h.plan(srv.URL+"/repo.git", "main", 1)
			p.Path = path
			_, err := h.run(p)
			require.NoError(t, err)
		})
	}
	t.Run("missing", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(srv.URL+"/repo.git", repo.LightTag, 1)
		p.Path = "docs/missing.md"
		_, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `path "docs/missing.md" does not exist in repository `+srv.URL+"/repo.git at v0.1")
	})
	t.Run("symlink out of the checkout", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(srv.URL+"/repo.git", "main", 1)
		p.Path = "link-out"
		_, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `path "link-out" in repository `+srv.URL+"/repo.git at main (commit "+repo.Main[4]+") is a symlink that leads outside the repository")
	})
	t.Run("escape", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(srv.URL+"/repo.git", "main", 1)
		p.Path = "../../etc/passwd"
		_, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "must stay inside the repository")
	})
}

func TestHTTPBasicAuth(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	const user, pass = "robot", "s3cr3t-t0ken"
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{Username: user, Password: pass})
	url := srv.URL + "/repo.git"

	t.Run("credentials from the Secret", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(url, "main", 1)
		p.CredentialsDir = h.secret(map[string]string{"username": user + "\n", "password": pass + "\n"})
		res, err := h.run(p)
		require.NoError(t, err, h.log.String())
		assert.Equal(t, repo.Main[4], res.Commit)
		assertNoSecret(t, p.Dest, pass, h.log.String(), res)
		assert.Equal(t, url, gittest.Git(t, p.Dest, "config", "remote.origin.url"))
		assert.Contains(t, h.log.String(), "plain http://", "plain http must be warned about")
	})
	t.Run("credentials in the URL are moved out of it", func(t *testing.T) {
		h := newHarness(t)
		withCreds := strings.Replace(url, "http://", "http://"+user+":"+pass+"@", 1)
		p := h.plan(withCreds, "main", 1)
		res, err := h.run(p)
		require.NoError(t, err, h.log.String())
		assert.Equal(t, url, res.Repository)
		assert.Equal(t, url, gittest.Git(t, p.Dest, "config", "remote.origin.url"))
		assertNoSecret(t, p.Dest, pass, h.log.String(), res)
	})
	t.Run("wrong password", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(url, "main", 1)
		p.CredentialsDir = h.secret(map[string]string{"username": user, "password": "wrong-" + pass})
		res, err := h.run(p)
		require.Error(t, err)
		assert.NotContains(t, h.log.String(), "retrying", "authentication failures are not retried")
		assert.Contains(t, err.Error(), "authentication to "+url+" failed")
		assertNoSecret(t, p.Dest, "wrong-"+pass, h.log.String()+err.Error(), res)
		entries, _ := os.ReadDir(p.Dest)
		assert.Empty(t, entries, "a failed clone leaves nothing behind")
	})
	t.Run("wrong password in the URL is redacted everywhere", func(t *testing.T) {
		h := newHarness(t)
		bad := strings.Replace(url, "http://", "http://"+user+":wrong-"+pass+"@", 1)
		p := h.plan(bad, "main", 1)
		p.Description = `Git context "src" (` + bad + `)`
		res, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `Git context "src" (http://robot:xxxxx@`)
		assertNoSecret(t, p.Dest, "wrong-"+pass, h.log.String()+err.Error(), res)
	})
	t.Run("token without user name", func(t *testing.T) {
		tokenSrv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{Username: "git", Password: "ghp_token123"})
		h := newHarness(t)
		p := h.plan(tokenSrv.URL+"/repo.git", "main", 1)
		p.CredentialsDir = h.secret(map[string]string{"password": "ghp_token123\n"})
		_, err := h.run(p)
		require.NoError(t, err, h.log.String())
	})
	t.Run("missing Secret", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(url, "main", 1)
		p.CredentialsDir = h.secret(nil)
		_, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the credentials Secret mounted at "+p.CredentialsDir+" is missing or empty")
	})
	t.Run("no credentials", func(t *testing.T) {
		h := newHarness(t)
		_, err := h.run(h.plan(url, "main", 1))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "repository "+url+" requires authentication: set the Git context's secretRef")
	})
}

// assertNoSecret checks that secret appears nowhere in the checkout (files
// and .git), the output or the result.
func assertNoSecret(t *testing.T, dest, secret, output string, res contract.Result) {
	t.Helper()
	assert.NotContains(t, output, secret)
	assert.NotContains(t, res.Repository, secret)
	assert.NotContains(t, res.Error, secret)
	_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.False(t, bytes.Contains(b, []byte(secret)), "secret found in %s", p)
		return nil
	})
}

func TestSSH(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewSSHServer(t, repo.Root, gittest.SSHOptions{})
	sshURL := "ssh://git@" + srv.Addr + "/repo.git"
	scpURL := "git@127.0.0.1:" + srv.Port() + ":repo.git"

	_, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	otherBlock, err := ssh.MarshalPrivateKey(otherPriv, "")
	require.NoError(t, err)
	otherKey := string(pem.EncodeToMemory(otherBlock))
	otherPub, err := ssh.NewPublicKey(otherPriv.Public())
	require.NoError(t, err)
	// known_hosts that lists the server's address with another key, and
	// one that lists only another host.
	mismatch := "[127.0.0.1]:" + srv.Port() + " " + string(ssh.MarshalAuthorizedKey(otherPub))
	unknown := "[127.0.0.1]:1 " + string(ssh.MarshalAuthorizedKey(srv.HostKey))

	cases := []struct {
		name    string
		url     string
		secret  map[string]string
		wantErr string
		wantLog string
	}{
		{name: "ssh URL", url: sshURL, secret: map[string]string{"ssh-privatekey": string(srv.ClientKeyPEM), "known_hosts": srv.KnownHostsLine()}},
		{name: "scp-like URL", url: scpURL, secret: map[string]string{"ssh-privatekey": string(srv.ClientKeyPEM), "known_hosts": srv.KnownHostsLine()}},
		{name: "wrong key", url: sshURL, secret: map[string]string{"ssh-privatekey": otherKey, "known_hosts": srv.KnownHostsLine()},
			wantErr: "SSH authentication to " + sshURL + " failed"},
		{name: "unknown host", url: sshURL, secret: map[string]string{"ssh-privatekey": string(srv.ClientKeyPEM), "known_hosts": unknown},
			wantErr: "SSH host " + srv.Addr + " is not in known_hosts"},
		{name: "changed host key", url: sshURL, secret: map[string]string{"ssh-privatekey": string(srv.ClientKeyPEM), "known_hosts": mismatch},
			wantErr: "does not match known_hosts"},
		{name: "no known_hosts", url: sshURL, secret: map[string]string{"ssh-privatekey": string(srv.ClientKeyPEM)},
			wantErr: "cannot verify the SSH host key of " + srv.Addr},
		{name: "host key check opted out", url: sshURL, secret: map[string]string{"ssh-privatekey": string(srv.ClientKeyPEM), "insecure-ignore-host-key": "true\n"},
			wantLog: "WARNING: SSH host key of " + srv.Addr + " is NOT verified"},
		{name: "no key", url: sshURL, secret: map[string]string{"known_hosts": srv.KnownHostsLine()},
			wantErr: `needs key "ssh-privatekey"`},
		{name: "missing repository", url: "ssh://git@" + srv.Addr + "/nope.git", secret: map[string]string{"ssh-privatekey": string(srv.ClientKeyPEM), "known_hosts": srv.KnownHostsLine()},
			wantErr: "repository ssh://git@" + srv.Addr + "/nope.git not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			p := h.plan(tc.url, repo.AnnotatedTag, 2)
			p.CredentialsDir = h.secret(tc.secret)
			res, err := h.run(p)
			if tc.wantErr != "" {
				require.Error(t, err)
				t.Log(err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.NotContains(t, h.log.String(), "retrying", "permanent errors are not retried")
				return
			}
			require.NoError(t, err, h.log.String())
			assert.Equal(t, repo.Main[2], res.Commit)
			assert.Equal(t, tc.url, res.Repository)
			assertCleanCheckout(t, p.Dest, repo.Main[2])
			assert.Equal(t, 2, commitCount(t, p.Dest))
			assert.Equal(t, tc.url, gittest.Git(t, p.Dest, "config", "remote.origin.url"))
			assertNoSecret(t, p.Dest, strings.TrimSpace(string(srv.ClientKeyPEM)), h.log.String(), res)
			if tc.wantLog != "" {
				assert.Contains(t, h.log.String(), tc.wantLog)
			} else {
				assert.NotContains(t, h.log.String(), "WARNING")
			}
		})
	}
}

func TestUnreachableHostGivesUpWithinBudget(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewSSHServer(t, repo.Root, gittest.SSHOptions{})
	closed := nettest.ClosedPort(t)
	for _, url := range []string{"http://" + closed + "/repo.git", "ssh://git@" + closed + "/repo.git"} {
		t.Run(url, func(t *testing.T) {
			h := newHarness(t)
			p := h.plan(url, "main", 1)
			p.CredentialsDir = h.secret(map[string]string{"ssh-privatekey": string(srv.ClientKeyPEM), "insecure-ignore-host-key": "true"})
			start := time.Now()
			_, err := h.run(p)
			elapsed := time.Since(start)
			require.Error(t, err)
			t.Log(err)
			assert.Contains(t, err.Error(), "gave up after")
			assert.Contains(t, err.Error(), "connection refused")
			assert.Less(t, elapsed, h.opts.RetryBudget+time.Second, "the last attempt starts within the budget")
			assert.GreaterOrEqual(t, elapsed, 700*time.Millisecond, "transient errors are retried with backoff")
			assert.GreaterOrEqual(t, strings.Count(h.log.String(), "transient error, retrying"), 2)
		})
	}
}

func TestTransientServerErrorIsRetried(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{FailFirst: 2})
	h := newHarness(t)
	p := h.plan(srv.URL+"/repo.git", "main", 1)
	res, err := h.run(p)
	require.NoError(t, err, h.log.String())
	assert.Equal(t, repo.Main[4], res.Commit)
	assert.Equal(t, 2, strings.Count(h.log.String(), "HTTP 503"), h.log.String())
}

func TestLargeFileSymlinksAndPermissions(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{BigFileSize: 24 << 20})
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{})
	h := newHarness(t)
	p := h.plan(srv.URL+"/repo.git", "main", 1)
	_, err := h.run(p)
	require.NoError(t, err)

	f, err := os.ReadFile(filepath.Join(p.Dest, repo.BigFile))
	require.NoError(t, err)
	sum := sha256.Sum256(f)
	assert.Equal(t, repo.BigSHA256, hex.EncodeToString(sum[:]))

	target, err := os.Readlink(filepath.Join(p.Dest, "link-to-readme"))
	require.NoError(t, err)
	assert.Equal(t, "README.md", target)
	target, err = os.Readlink(filepath.Join(p.Dest, "link-to-docs"))
	require.NoError(t, err)
	assert.Equal(t, "docs", target)

	st, err := os.Stat(filepath.Join(p.Dest, "run.sh"))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o775), st.Mode().Perm(), "executable stays executable, and group-writable")
	assertGroupShared(t, p.Dest)
}

// assertGroupShared checks that every file and directory below dir has
// group bits equal to its owner bits and that directories are setgid.
func assertGroupShared(t *testing.T, dir string) {
	t.Helper()
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		require.NoError(t, err)
		m := info.Mode()
		assert.Equal(t, (m.Perm()&0o700)>>3, m.Perm()&0o070, "%s has mode %s", p, m)
		if d.IsDir() {
			assert.NotZero(t, m&fs.ModeSetgid, "%s is not setgid", p)
		}
		n++
		return nil
	}))
	assert.Greater(t, n, 10)
}

func TestDest(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{})
	url := srv.URL + "/repo.git"
	t.Run("outside the allowed roots", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(url, "main", 1)
		p.Dest = filepath.Join(t.TempDir(), "elsewhere")
		_, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is outside "+h.root)
	})
	t.Run("dotdot", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(url, "main", 1)
		p.Dest = h.root + "/a/../../x"
		_, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `contains ".."`)
	})
	t.Run("someone else's files", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(url, "main", 1)
		require.NoError(t, os.MkdirAll(p.Dest, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(p.Dest, "notes.txt"), []byte("keep"), 0o644))
		_, err := h.run(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is not empty")
		b, err := os.ReadFile(filepath.Join(p.Dest, "notes.txt"))
		require.NoError(t, err)
		assert.Equal(t, "keep", string(b))
	})
	t.Run("leftover of an earlier run is replaced", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(url, repo.LightTag, 1)
		_, err := h.run(p)
		require.NoError(t, err)
		p.Ref = "main"
		res, err := h.run(p)
		require.NoError(t, err)
		assert.Equal(t, repo.Main[4], res.Commit)
		assertCleanCheckout(t, p.Dest, repo.Main[4])
	})
	t.Run("dest is the root itself", func(t *testing.T) {
		h := newHarness(t)
		p := h.plan(url, "main", 1)
		p.Dest = h.root
		_, err := h.run(p)
		require.NoError(t, err)
		assertCleanCheckout(t, p.Dest, repo.Main[4])
	})
}

// TestStalledServer: a server that never answers the pack request, or
// stops sending in the middle of the pack, fails the attempt after the
// idle timeout with a message that says so; the attempt is retried like
// any transient failure. A transfer that keeps moving is not cut off.
func TestStalledServer(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{BigFileSize: 1 << 20})
	cases := []struct {
		name    string
		opts    gittest.HTTPOptions
		wantLog string
		wantErr string
	}{
		{name: "never answers once", opts: gittest.HTTPOptions{Stall: true, StallCount: 1}, wantLog: "sent no data for 2s (the server stalled)"},
		{name: "stalls mid-pack once", opts: gittest.HTTPOptions{Stall: true, StallAfter: 64 << 10, StallCount: 1}, wantLog: "sent no data for 2s (the server stalled)"},
		{name: "stalls mid-pack every time", opts: gittest.HTTPOptions{Stall: true, StallAfter: 64 << 10}, wantErr: "sent no data for 2s (the server stalled)"},
		// 1 MiB in 16 KiB pieces 40 ms apart: about 2.6 s in all, more
		// than the idle timeout, and never idle for long.
		{name: "slow but steady", opts: gittest.HTTPOptions{Trickle: 40 * time.Millisecond}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := gittest.NewHTTPServer(t, repo.Root, tc.opts)
			h := newHarness(t)
			h.opts.IdleTimeout = 2 * time.Second
			// Room for a retry after one 2 s stall even on a loaded
			// machine; "every time" still gives up well inside 20 s.
			h.opts.RetryBudget = 8 * time.Second
			p := h.plan(srv.URL+"/repo.git", "main", 1)
			start := time.Now()
			res, err := h.run(p)
			t.Logf("%s: %v", time.Since(start), err)
			assert.Less(t, time.Since(start), 20*time.Second, "a stalled server does not hang git-init")
			if tc.opts.Trickle > 0 {
				require.NoError(t, err, h.log.String())
				assert.NotContains(t, h.log.String(), "retrying")
				assert.Greater(t, time.Since(start), h.opts.IdleTimeout, "the transfer took longer than the idle timeout")
				assertCleanCheckout(t, p.Dest, repo.Main[4])
				return
			}
			assert.GreaterOrEqual(t, srv.Stalls.Load(), int32(1))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "gave up after")
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err, h.log.String())
			assert.Contains(t, h.log.String(), "transient error, retrying")
			assert.Contains(t, h.log.String(), tc.wantLog)
			assertCleanCheckout(t, p.Dest, repo.Main[4])
			assert.Equal(t, repo.Main[4], res.Commit)
		})
	}
}

// TestDestThroughSymlink: a dest that passes through a symlink (say, one
// checked out by an earlier Git context) is refused, and nothing is
// written or deleted where the symlink leads.
func TestDestThroughSymlink(t *testing.T) {
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{})
	h := newHarness(t)
	elsewhere := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(elsewhere, "victim", ".git"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(elsewhere, "victim", "data.txt"), []byte("keep"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(h.root, "first"), 0o755))
	require.NoError(t, os.Symlink(elsewhere, filepath.Join(h.root, "first", "vendor")))
	p := h.plan(srv.URL+"/repo.git", "main", 1)
	p.Dest = filepath.Join(h.root, "first", "vendor", "victim")
	_, err := h.run(p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dest "+p.Dest+" passes through the symlink "+filepath.Join(h.root, "first", "vendor"))
	b, err := os.ReadFile(filepath.Join(elsewhere, "victim", "data.txt"))
	require.NoError(t, err, "the directory the symlink leads to is untouched")
	assert.Equal(t, "keep", string(b))
	_, err = os.Stat(filepath.Join(elsewhere, "victim", "README.md"))
	assert.True(t, os.IsNotExist(err), "nothing cloned outside the root")
}

// TestStalledSSHServer: an SSH server that accepts the connection and then
// says nothing fails the attempt after the idle timeout, retried as a
// transient error, instead of hanging git-init.
func TestStalledSSHServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	h := newHarness(t)
	h.opts.IdleTimeout = time.Second
	h.opts.RetryBudget = 2 * time.Second
	p := h.plan("ssh://git@"+l.Addr().String()+"/repo.git", "main", 1)
	p.CredentialsDir = h.secret(map[string]string{"password": "pw", "insecure-ignore-host-key": "true"})
	start := time.Now()
	_, err = h.run(p)
	require.Error(t, err)
	t.Log(err)
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Contains(t, err.Error(), "gave up after")
	assert.Contains(t, err.Error(), "sent no data for 1s (the server stalled)")
}
