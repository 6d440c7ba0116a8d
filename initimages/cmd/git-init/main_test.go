package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/initimages/internal/proctest"
	"github.com/kubeopencode/kubeopencode/internal/gittest"
	"github.com/kubeopencode/kubeopencode/internal/nettest"
)

// TestBinary runs the statically built git-init as the pod would.
func TestBinary(t *testing.T) {
	sandbox := proctest.Sandbox(t)
	bin := proctest.Build(t, ".", sandbox, "git-init")
	termLog := proctest.TerminationLog(t, sandbox)
	repo := gittest.NewRepo(t, gittest.RepoOptions{})
	const user, pass = "robot", "bin-s3cr3t"
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{Username: user, Password: pass, TLS: true})
	certs := filepath.Join(sandbox, "ca.pem")
	b, err := os.ReadFile(srv.CertFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certs, b, 0o644))
	url := srv.URL + "/repo.git"
	ws := proctest.Volume(t, filepath.Join(sandbox, "workspace"))

	secret := filepath.Join(sandbox, "secret")
	require.NoError(t, os.Mkdir(secret, 0o755))
	for k, v := range map[string]string{"username": user, "password": pass} {
		p := filepath.Join(secret, k)
		require.NoError(t, os.WriteFile(p, []byte(v), 0o600))
		proctest.Readable(t, p)
	}

	env := func(plan any) []string {
		b, err := json.Marshal(plan)
		require.NoError(t, err)
		return []string{
			contract.GitPlanEnv + "=" + string(b),
			"KUBEOPENCODE_ALLOWED_ROOTS=" + ws,
			"KUBEOPENCODE_GIT_RETRY_BUDGET=1s",
			"KUBEOPENCODE_GIT_INITIAL_BACKOFF=100ms",
			// Go's standard override of the system roots trusts the
			// test server's self-signed certificate.
			"SSL_CERT_FILE=" + certs,
		}
	}
	plan := func(ref, dir string) contract.GitPlan {
		return contract.GitPlan{
			Version: contract.Version, Repository: url, Ref: ref, Depth: 1,
			Dest: filepath.Join(ws, dir), Path: "docs", CredentialsDir: secret,
			Description: `Git context "src"`,
		}
	}

	t.Run("success", func(t *testing.T) {
		r := proctest.Exec(t, bin, termLog, env(plan("main", "success"))...)
		require.Equal(t, 0, r.ExitCode, "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
		assert.Equal(t, contract.Result{Commit: repo.Main[4], Repository: url}, r.Result)
		assert.Contains(t, r.Stdout, repo.Main[4])
		assert.NotContains(t, r.Stdout+r.Stderr+r.RawResult, pass)
		assert.NotContains(t, r.Stderr, "WARNING", "https needs no warning")
		dest := filepath.Join(ws, "success")
		assert.Equal(t, repo.Main[4], gittest.Git(t, dest, "rev-parse", "HEAD"))
		assert.Empty(t, gittest.Git(t, dest, "status", "--porcelain"))

		st, err := os.Stat(filepath.Join(dest, "docs", "guide.md"))
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o664), st.Mode().Perm())
		if proctest.AsPod() {
			sys := st.Sys().(*syscall.Stat_t)
			assert.EqualValues(t, proctest.PodID, sys.Uid)
			assert.EqualValues(t, proctest.PodID, sys.Gid)
			// The agent container runs as another UID in the fsGroup.
			agent := exec.Command("sh", "-c", "echo more >> README.md && mkdir -p docs/new && touch docs/new/x .git/agent-was-here")
			agent.Dir = dest
			agent.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{proctest.PodID}}}
			out, err := agent.CombinedOutput()
			require.NoError(t, err, "the agent cannot write the checkout: %s", out)

			// git refuses a repository owned by another UID unless the
			// agent's environment marks it safe.
			agentGit := func(env ...string) (string, error) {
				cmd := exec.Command("git", "commit", "-qam", "agent change")
				cmd.Dir = dest
				cmd.Env = append([]string{"HOME=/nonexistent", "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com"}, env...)
				cmd.SysProcAttr = agent.SysProcAttr
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			out2, err := agentGit()
			require.Error(t, err)
			assert.Contains(t, out2, "dubious ownership")
			out2, err = agentGit("GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*")
			require.NoError(t, err, "the agent cannot commit: %s", out2)
		}
	})

	t.Run("missing ref", func(t *testing.T) {
		r := proctest.Exec(t, bin, termLog, env(plan("nope", "missing-ref"))...)
		assert.Equal(t, 1, r.ExitCode)
		assert.Equal(t, `Git context "src": ref "nope" not found in `+url+": no branch, tag or commit of that name", r.Result.Error)
		assert.Equal(t, url, r.Result.Repository)
		assert.Contains(t, r.Stderr, `ref "nope" not found`)
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		e := env(plan("main", "untrusted"))
		r := proctest.Exec(t, bin, termLog, e[:len(e)-1]...) // without SSL_CERT_FILE
		assert.Equal(t, 1, r.ExitCode)
		assert.Contains(t, r.Result.Error, "TLS certificate of "+url+" is not trusted")
		assert.NotContains(t, r.Stderr, "retrying", "not retried")
	})

	t.Run("unreachable", func(t *testing.T) {
		p := plan("main", "unreachable")
		p.Repository = "http://" + nettest.ClosedPort(t) + "/repo.git"
		start := time.Now()
		r := proctest.Exec(t, bin, termLog, env(p)...)
		assert.Equal(t, 1, r.ExitCode)
		assert.Contains(t, r.Result.Error, "gave up after")
		assert.Less(t, time.Since(start), 3*time.Second)
	})

	t.Run("version mismatch", func(t *testing.T) {
		p := plan("main", "version")
		p.Version = "kubeopencode.io/workspace/v0"
		r := proctest.Exec(t, bin, termLog, env(p)...)
		assert.Equal(t, 1, r.ExitCode)
		assert.Equal(t, (&contract.VersionError{Got: p.Version, Want: contract.Version}).Error(), r.Result.Error)
	})

	t.Run("no plan", func(t *testing.T) {
		r := proctest.Exec(t, bin, termLog)
		assert.Equal(t, 1, r.ExitCode)
		assert.Contains(t, r.Result.Error, contract.GitPlanEnv)
	})
}

// TestSIGTERM: the kubelet's SIGTERM stops a clone at once, with a
// termination message, and leaves no partial checkout.
func TestSIGTERM(t *testing.T) {
	sandbox := proctest.Sandbox(t)
	bin := proctest.Build(t, ".", sandbox, "git-init")
	termLog := proctest.TerminationLog(t, sandbox)
	repo := gittest.NewRepo(t, gittest.RepoOptions{BigFileSize: 4 << 20})
	// 4 MiB in 16 KiB pieces 50 ms apart: about 13 s if left alone.
	srv := gittest.NewHTTPServer(t, repo.Root, gittest.HTTPOptions{Trickle: 50 * time.Millisecond})
	ws := proctest.Volume(t, filepath.Join(sandbox, "workspace"))
	dest := filepath.Join(ws, "src")
	plan, err := json.Marshal(contract.GitPlan{Version: contract.Version, Repository: srv.URL + "/repo.git", Depth: 1, Dest: dest, Description: `Git context "src"`})
	require.NoError(t, err)
	cmd := exec.Command(bin)
	cmd.Env = []string{contract.GitPlanEnv + "=" + string(plan), "KUBEOPENCODE_ALLOWED_ROOTS=" + ws, "KUBEOPENCODE_TERMINATION_MESSAGE_PATH=" + termLog}
	if proctest.AsPod() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: proctest.PodID, Gid: proctest.PodID, Groups: []uint32{proctest.PodID}}}
	}
	require.NoError(t, cmd.Start())
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	err = cmd.Wait()
	assert.Less(t, time.Since(start), 2*time.Second, "git-init stops promptly on SIGTERM")
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	raw, err := os.ReadFile(termLog)
	require.NoError(t, err)
	var res contract.Result
	require.NoError(t, json.Unmarshal(raw, &res), "%s", raw)
	assert.Contains(t, res.Error, `Git context "src": `)
	assert.Contains(t, res.Error, "stopped before the clone of "+srv.URL+"/repo.git was complete (terminated signal received)")
	entries, _ := os.ReadDir(dest)
	assert.Empty(t, entries, "no partial checkout is left behind")
}
