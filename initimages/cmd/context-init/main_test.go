package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/initimages/internal/proctest"
	"github.com/kubeopencode/kubeopencode/internal/nettest"
)

// TestBinary runs the statically built context-init as the pod would.
func TestBinary(t *testing.T) {
	sandbox := proctest.Sandbox(t)
	bin := proctest.Build(t, ".", sandbox, "context-init")
	termLog := proctest.TerminationLog(t, sandbox)
	ws := proctest.Volume(t, filepath.Join(sandbox, "workspace"))
	outside := proctest.Volume(t, filepath.Join(sandbox, "outside"))
	readonly := filepath.Join(ws, "readonly")
	require.NoError(t, os.Mkdir(readonly, 0o555))
	require.NoError(t, os.Chmod(readonly, 0o555))

	// A ConfigMap volume: key -> ..data/key, ..data -> timestamped directory.
	src := filepath.Join(sandbox, "sources", "rules")
	data := filepath.Join(src, "..2026_01_01_00_00_00.1")
	require.NoError(t, os.MkdirAll(data, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "rules.md"), []byte("be nice\n"), 0o644))
	require.NoError(t, os.Symlink(filepath.Base(data), filepath.Join(src, "..data")))
	require.NoError(t, os.Symlink("..data/rules.md", filepath.Join(src, "rules.md")))

	planDir := filepath.Join(sandbox, "plan")
	require.NoError(t, os.Mkdir(planDir, 0o755))
	run := func(plan contract.ContextPlan) proctest.Run {
		b, err := json.Marshal(plan)
		require.NoError(t, err)
		p := filepath.Join(planDir, contract.ContextPlanKey)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		proctest.Readable(t, p)
		return proctest.Exec(t, bin, termLog,
			"KUBEOPENCODE_CONTEXT_PLAN_FILE="+p,
			"KUBEOPENCODE_ALLOWED_ROOTS="+ws+":"+outside)
	}
	text := "# Task\nfix it\n"

	t.Run("success", func(t *testing.T) {
		r := run(contract.ContextPlan{Version: contract.Version, Entries: []contract.FileEntry{
			{Path: filepath.Join(ws, "task.md"), Content: &text},
			{Path: filepath.Join(ws, ".rules"), Source: src, Mode: 0o600},
			{Path: filepath.Join(outside, "etc", "agent", "task.md"), Content: &text, Mode: 0o755},
			{Path: filepath.Join(ws, "opt.md"), Source: filepath.Join(sandbox, "sources", "missing", "k"), Optional: true},
		}})
		require.Equal(t, 0, r.ExitCode, "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
		assert.Equal(t, contract.Result{}, r.Result)
		assert.Contains(t, r.Stdout, "wrote 3 files, skipped 1 optional contexts")
		for p, mode := range map[string]fs.FileMode{
			filepath.Join(ws, "task.md"):                      0o664,
			filepath.Join(ws, ".rules", "rules.md"):           0o660,
			filepath.Join(outside, "etc", "agent", "task.md"): 0o775,
			filepath.Join(outside, "etc", "agent"):            0o775 | fs.ModeSetgid | fs.ModeDir,
		} {
			st, err := os.Stat(p)
			require.NoError(t, err)
			assert.Equal(t, mode, st.Mode()&(fs.ModePerm|fs.ModeSetgid|fs.ModeDir), p)
			if proctest.AsPod() {
				assert.EqualValues(t, proctest.PodID, st.Sys().(*syscall.Stat_t).Gid, p)
			}
		}
		b, err := os.ReadFile(filepath.Join(ws, ".rules", "rules.md"))
		require.NoError(t, err)
		assert.Equal(t, "be nice\n", string(b))
	})

	t.Run("read-only target", func(t *testing.T) {
		r := run(contract.ContextPlan{Version: contract.Version, Entries: []contract.FileEntry{
			{Path: filepath.Join(readonly, "task.md"), Content: &text, Description: "Text context 1"},
		}})
		assert.Equal(t, 1, r.ExitCode)
		assert.Equal(t, "Text context 1: cannot write "+filepath.Join(readonly, "task.md")+": permission denied", r.Result.Error)
		assert.Contains(t, r.Stderr, "permission denied")
	})

	t.Run("missing source", func(t *testing.T) {
		r := run(contract.ContextPlan{Version: contract.Version, Entries: []contract.FileEntry{
			{Path: filepath.Join(ws, "g.md"), Source: filepath.Join(src, "nope.md"), Description: `ConfigMap "rules" key "nope.md"`},
		}})
		assert.Equal(t, 1, r.ExitCode)
		assert.Contains(t, r.Result.Error, `ConfigMap "rules" key "nope.md": source `)
	})

	t.Run("version mismatch", func(t *testing.T) {
		r := run(contract.ContextPlan{Version: "kubeopencode.io/workspace/v2"})
		assert.Equal(t, 1, r.ExitCode)
		assert.Equal(t, (&contract.VersionError{Got: "kubeopencode.io/workspace/v2", Want: contract.Version}).Error(), r.Result.Error)
	})

	t.Run("no plan", func(t *testing.T) {
		r := proctest.Exec(t, bin, termLog, "KUBEOPENCODE_CONTEXT_PLAN_FILE="+filepath.Join(sandbox, "absent.json"))
		assert.Equal(t, 1, r.ExitCode)
		assert.Contains(t, r.Result.Error, "cannot read the context plan")
	})
}

// TestEgressCheckBinary runs context-init --egress-check as the pod's first
// init container would: it passes when every target is out of reach and
// fails, naming what it reached, when one answers.
func TestEgressCheckBinary(t *testing.T) {
	sandbox := proctest.Sandbox(t)
	bin := proctest.Build(t, ".", sandbox, "context-init")
	termLog := proctest.TerminationLog(t, sandbox)

	reachable := nettest.Serve(t, "127.0.0.1:0")
	closedAddr := nettest.ClosedPort(t)

	run := func(plan contract.EgressCheckPlan) proctest.Run {
		b, err := json.Marshal(plan)
		require.NoError(t, err)
		return proctest.ExecArgs(t, bin, []string{"--egress-check"}, termLog, contract.EgressCheckEnv+"="+string(b))
	}
	t.Run("refused", func(t *testing.T) {
		r := run(contract.EgressCheckPlan{Version: contract.Version, WaitSeconds: 2, Targets: []contract.EgressProbe{{Address: closedAddr, What: "Kubernetes API"}}})
		require.Equal(t, 0, r.ExitCode, "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
		assert.Equal(t, contract.Result{Refused: []string{closedAddr + " (Kubernetes API)"}}, r.Result)
		assert.Contains(t, r.Stdout, "egress-check: refused "+closedAddr+" (Kubernetes API)")
	})
	t.Run("reachable", func(t *testing.T) {
		r := run(contract.EgressCheckPlan{Version: contract.Version, WaitSeconds: 1, Targets: []contract.EgressProbe{
			{Address: reachable, What: "Kubernetes API"}, {Address: closedAddr, What: "cloud metadata"},
		}})
		require.Equal(t, 1, r.ExitCode, "stdout: %s\nstderr: %s", r.Stdout, r.Stderr)
		assert.Contains(t, r.Result.Error, "egress isolation is not enforced: the pod can connect to "+reachable+" (Kubernetes API)")
		assert.Equal(t, []string{reachable + " (Kubernetes API)"}, r.Result.Reachable)
		assert.Equal(t, []string{closedAddr + " (cloud metadata)"}, r.Result.Refused)
	})
	t.Run("bad plan", func(t *testing.T) {
		r := proctest.ExecArgs(t, bin, []string{"--egress-check"}, termLog, contract.EgressCheckEnv+"={}")
		require.Equal(t, 1, r.ExitCode)
		assert.Contains(t, r.Result.Error, "$"+contract.EgressCheckEnv+": plan version")
	})
}
