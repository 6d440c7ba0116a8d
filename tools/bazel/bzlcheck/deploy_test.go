package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const repoRoot = "../../.."

// deployStubs stand in for docker, kind and kubectl on a machine where the
// registry and the cluster do not exist yet, and for a BSD (macOS) mktemp,
// which has no --suffix. Each logs its arguments.
var deployStubs = map[string]string{
	"docker": `case "$1" in
inspect) case "$*" in *Networks.kind*) echo null ;; *) exit 1 ;; esac ;;
exec) if [ "$2" = -i ]; then cat >/dev/null; fi ;;
esac`,
	"kind": `case "$1 $2" in
"get clusters") ;;
"get nodes") echo kubeopencode-control-plane ;;
"create cluster") cat >/dev/null ;;
esac`,
	"kubectl": `case "$*" in
*"apply -f -"*) cat >/dev/null ;;
*"apply --server-side -f "*)
	for a in "$@"; do if [ -f "$a" ]; then echo "== $a" >>"$STUB_LOG.applied"; cat "$a" >>"$STUB_LOG.applied"; fi; done ;;
*"get -f "*) echo "kubeopencode-system kubeopencode-controller" ;;
esac`,
	"mktemp": `for a in "$@"; do case "$a" in --*) echo "mktemp: illegal option -- ${a#--}" >&2; exit 1 ;; esac; done
exec /usr/bin/mktemp "$@"`,
}

// TestDeployRunsAsBazelRunDoes runs tools/bazel/deploy.sh the way
// `bazel run //:deploy` does: from <runfiles>/_main, with the arguments of
// the sh_binary expanded as Bazel expands them and only its data in the
// runfiles (rules_oci's push scripts stand-ins at their real paths, the
// digests as rules_oci names them, the real renderer). It must push every
// image and apply manifests pinned to their digests.
func TestDeployRunsAsBazelRunDoes(t *testing.T) {
	ws, err := LoadWorkspace(repoRoot)
	require.NoError(t, err)
	deploy := ws.Packages[""].Rules["deploy"]
	require.NotNil(t, deploy, "//:deploy")

	dir := t.TempDir()
	script := filepath.Join(dir, "deploy")
	runfiles := script + ".runfiles"
	main := filepath.Join(runfiles, MainRepo)
	log := filepath.Join(dir, "log")

	// The runfiles: every data label as Bazel lays it out.
	var pushes []string
	for _, s := range deploy.Attrs["data"].Strings() {
		l, err := ParseLabel(s, "")
		require.NoError(t, err)
		target, err := ws.Resolve(l)
		require.NoError(t, err)
		paths, err := expansionPaths(ws, l, false, map[Label]bool{})
		require.NoError(t, err)
		for _, p := range paths {
			dst := filepath.Join(main, filepath.FromSlash(p))
			require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
			switch r := target.Rule; {
			case r != nil && r.Kind == "oci_push":
				pushes = append(pushes, r.Name)
				// Like rules_oci's push script, it finds its runfiles
				// (crane, the image) through RUNFILES_DIR or "$0.runfiles".
				require.NoError(t, os.WriteFile(dst, []byte(`#!/bin/bash
f=bazel_tools/tools/bash/runfiles/runfiles.bash
[ -f "${RUNFILES_DIR:-/dev/null}/$f" ] || [ -f "$0.runfiles/$f" ] ||
	{ echo "ERROR: runfiles.bash initializer cannot find $f" >&2; exit 1; }
echo "push `+r.Name+` $*" >>"`+log+`"
`), 0o755))
			case r != nil && strings.HasSuffix(l.Name, ".digest"):
				require.NoError(t, os.WriteFile(dst, []byte(fakeIndexDigest(r.Name)+"\n"), 0o644))
			case r != nil && r.Kind == "kubeopencode_go_binary":
				out, err := goCmd(repoRoot, "build", "-o", dst, "./"+r.Pkg.Path)
				require.NoError(t, err, string(out))
			default:
				require.NoError(t, copyFile(filepath.Join(repoRoot, filepath.FromSlash(p)), dst))
			}
		}
	}
	require.NotEmpty(t, pushes)
	// The push rule's runfiles bring Bazel's bash runfiles library.
	lib := filepath.Join(runfiles, "bazel_tools", "tools", "bash", "runfiles", "runfiles.bash")
	require.NoError(t, os.MkdirAll(filepath.Dir(lib), 0o755))
	require.NoError(t, os.WriteFile(lib, []byte("# runfiles library\n"), 0o644))
	src, err := ParseLabel(deploy.Attrs["srcs"].Strings()[0], "")
	require.NoError(t, err)
	require.NoError(t, copyFile(filepath.Join(repoRoot, src.Pkg, src.Name), script))
	require.NoError(t, os.Chmod(script, 0o755))

	// The arguments, expanded as Bazel expands them.
	var args []string
	locRE := regexp.MustCompile(`^\$\((rlocationpaths?|rootpaths?) ([^)]+)\)$`)
	for _, a := range deploy.Attrs["args"].Strings() {
		m := locRE.FindStringSubmatch(a)
		if m == nil {
			args = append(args, a)
			continue
		}
		l, err := ParseLabel(m[2], "")
		require.NoError(t, err)
		paths, err := expansionPaths(ws, l, false, map[Label]bool{})
		require.NoError(t, err)
		for _, p := range paths {
			if strings.HasPrefix(m[1], "rlocationpath") {
				p = path.Join(MainRepo, p)
			}
			args = append(args, p)
		}
	}

	stubs := filepath.Join(dir, "stubs")
	require.NoError(t, os.MkdirAll(stubs, 0o755))
	for name, body := range deployStubs {
		require.NoError(t, os.WriteFile(filepath.Join(stubs, name), []byte("#!/bin/bash\necho \""+name+" $*\" >>\"$STUB_LOG\"\n"+body+"\n"), 0o755))
	}
	cmd := exec.Command("bash", append([]string{"-x", script}, args...)...)
	cmd.Dir = main
	cmd.Env = []string{"BASH_XTRACEFD=2", "PATH=" + stubs + ":" + StrictPath, "HOME=" + dir, "STUB_LOG=" + log, "TMPDIR=" + dir}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "bazel run //:deploy would fail:\n%s", out)

	logData, err := os.ReadFile(log)
	require.NoError(t, err)
	applied, err := os.ReadFile(log + ".applied")
	require.NoError(t, err)
	for _, push := range pushes {
		image := strings.TrimSuffix(push, "_push")
		assert.Contains(t, string(logData), fmt.Sprintf("push %s --repository localhost:5001/kubeopencode/%s", push, image))
		assert.Contains(t, string(applied), fmt.Sprintf("localhost:5001/kubeopencode/%s@%s", image, fakeIndexDigest(image+"_index")),
			"the applied manifests pin %s to the digest of its index", image)
	}
	assert.NotContains(t, string(applied), "kubeopencode.io/image/", "no placeholder is left")
}

func fakeIndexDigest(index string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(index)))
}
