package images_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/tools/images"
)

// The images workflow publishes what users deploy. These tests read
// .github/workflows/images.yaml and run its publishing steps with stand-ins
// for bazel and cosign that behave like the real ones where it matters:
// an image built with --config=release (stamped) has another digest than
// the same image built without it, `bazel run` of a push target prints the
// pushed reference as its last line (as rules_oci's push script, i.e. crane
// push, does), and a file is only in bazel-bin after a build with the flags
// that produce it.

type workflow struct {
	Permissions map[string]string `json:"permissions"`
	Jobs        map[string]struct {
		Permissions map[string]string `json:"permissions"`
		Steps       []step            `json:"steps"`
	} `json:"jobs"`
}

type step struct {
	ID   string            `json:"id"`
	Name string            `json:"name"`
	Uses string            `json:"uses"`
	Run  string            `json:"run"`
	If   string            `json:"if"`
	Env  map[string]string `json:"env"`
	With map[string]string `json:"with"`
}

const workflowFile = repoRoot + "/.github/workflows/images.yaml"

func readWorkflow(t *testing.T) workflow {
	t.Helper()
	data, err := os.ReadFile(workflowFile)
	require.NoError(t, err)
	var w workflow
	require.NoError(t, yaml.Unmarshal(data, &w))
	require.Contains(t, w.Jobs, "images")
	return w
}

func stepNamed(t *testing.T, w workflow, prefix string) step {
	t.Helper()
	for _, s := range w.Jobs["images"].Steps {
		if strings.HasPrefix(s.Name, prefix) {
			return s
		}
	}
	t.Fatalf("%s: no step named %q...", workflowFile, prefix)
	return step{}
}

func TestWorkflowPinsActionsAndGrantsOnlySigningPermissions(t *testing.T) {
	w := readWorkflow(t)
	assert.Equal(t, map[string]string{"contents": "read"}, w.Permissions, "the default token is read-only")
	assert.Equal(t, map[string]string{"contents": "read", "packages": "write", "id-token": "write", "attestations": "write"},
		w.Jobs["images"].Permissions)
	pinned := regexp.MustCompile(`^[\w.-]+/[\w.-]+@[0-9a-f]{40}$`)
	uses := map[string]bool{}
	for _, s := range w.Jobs["images"].Steps {
		if s.Uses == "" {
			continue
		}
		assert.Regexp(t, pinned, s.Uses, "step %q: pin actions by commit, not by tag", s.Name)
		uses[strings.Split(s.Uses, "@")[0]] = true
	}
	assert.True(t, uses["sigstore/cosign-installer"], "cosign is installed by sigstore/cosign-installer")
	assert.True(t, uses["actions/attest-build-provenance"], "provenance is attested")
}

// fakeBazel is a bazel for the publishing steps. Digests depend on the image
// and on whether the build was stamped (--config=release).
const fakeBazel = `#!/bin/bash
set -euo pipefail
log="$FAKE_LOG"
cmd="$1"; shift
config=unstamped
define=
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--config=release) config=stamped ;;
	--define=IMAGE_REPOSITORY=*) define="${1#--define=IMAGE_REPOSITORY=}" ;;
	--output=*) ;;
	--) shift; break ;;
	*) args+=("$1") ;;
	esac
	shift
done
digest() { printf 'sha256:%s' "$(printf '%s|%s' "$1" "$2" | sha256sum | cut -c1-64)"; }
case "$cmd" in
query)
	for i in $FAKE_IMAGES; do echo "//:${i}_push"; done
	;;
run)
	target="${args[0]}"
	image="${target#//:}"; image="${image%_push}"
	repo=""; tags=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--repository) repo="$2"; shift ;;
		--tag) tags+=("$2") ;;
		esac
		shift
	done
	d="$(digest "$image" "$config")"
	echo "push ${repo}@${d} ${tags[*]}" >>"$log"
	echo "${repo}@${d}"
	;;
build)
	for target in "${args[@]}"; do
		case "$target" in
		//:*_index.digest)
			image="${target#//:}"; image="${image%_index.digest}"
			mkdir -p "bazel-out/$config"
			digest "$image" "$config" >"bazel-out/$config/${image}_index.json.sha256"
			;;
		//:manifests)
			mkdir -p "bazel-out/$config"
			: >"bazel-out/$config/kubeopencode.yaml"
			for i in $FAKE_IMAGES; do
				echo "image: ${define}/${i}@$(digest "$i" "$config")" >>"bazel-out/$config/kubeopencode.yaml"
			done
			;;
		esac
	done
	;;
cquery)
	target="${args[0]}"
	case "$target" in
	//:manifests) echo "bazel-out/$config/kubeopencode.yaml" ;;
	//:*_index.digest) image="${target#//:}"; echo "bazel-out/$config/${image%_index.digest}_index.json.sha256" ;;
	esac
	;;
*) echo "fake bazel: unexpected $cmd" >&2; exit 2 ;;
esac
`

const fakeCosign = `#!/bin/bash
echo "cosign $*" >>"$FAKE_LOG"
`

// runSteps runs the run scripts of the named steps, in order, as the runner
// would (bash -e, the workflow's step env, GITHUB_* files), in dir.
func runSteps(t *testing.T, w workflow, dir string, env []string, names ...string) {
	t.Helper()
	for _, name := range names {
		s := stepNamed(t, w, name)
		require.NotEmpty(t, s.Run, "step %q runs a script", name)
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", s.Run)
		cmd.Dir = dir
		cmd.Env = append([]string(nil), env...)
		for k, v := range s.Env {
			switch v {
			case "${{ github.ref_name }}":
				v = "main"
			case "${{ github.ref_type }}":
				v = "branch"
			}
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "step %q failed:\n%s", name, out)
	}
}

func readEnvFile(t *testing.T, p string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

func fakeDigest(image, config string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(image+"|"+config)))
}

func TestWorkflowRecordsSignsAndAttestsThePushedDigests(t *testing.T) {
	w := readWorkflow(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "bazel"), []byte(fakeBazel), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "cosign"), []byte(fakeCosign), 0o755))
	work := filepath.Join(dir, "work")
	require.NoError(t, os.MkdirAll(work, 0o755))
	ghEnv, ghOut, summary := filepath.Join(dir, "env"), filepath.Join(dir, "output"), filepath.Join(dir, "summary")
	log := filepath.Join(dir, "log")
	for _, f := range []string{ghEnv, ghOut, summary, log} {
		require.NoError(t, os.WriteFile(f, nil, 0o644))
	}
	env := []string{
		"PATH=" + bin + ":/usr/bin:/bin",
		"HOME=" + dir,
		"FAKE_LOG=" + log,
		"FAKE_IMAGES=" + strings.Join(images.Names(), " "),
		// An owner with capitals, as GitHub allows and OCI does not.
		"GITHUB_REPOSITORY_OWNER=KubeOpenCode",
		"GITHUB_SHA=0123456789abcdef0123456789abcdef01234567",
		"GITHUB_ENV=" + ghEnv,
		"GITHUB_OUTPUT=" + ghOut,
		"GITHUB_STEP_SUMMARY=" + summary,
	}

	runSteps(t, w, work, env, "Registry")
	registry := readEnvFile(t, ghEnv)["REGISTRY"]
	assert.Equal(t, "ghcr.io/kubeopencode", registry, "OCI repository names must be lower case")
	env = append(env, "REGISTRY="+registry)

	runSteps(t, w, work, env, "Push, sign and record", "Render the install manifests")

	// What was pushed: every image of tools/images, stamped, with both tags.
	logData, err := os.ReadFile(log)
	require.NoError(t, err)
	var pushed, signed []string
	for _, line := range strings.Split(strings.TrimSpace(string(logData)), "\n") {
		switch f := strings.Fields(line); f[0] {
		case "push":
			pushed = append(pushed, f[1])
			assert.Equal(t, []string{"main", "sha-0123456789ab"}, f[2:], "tags of %s", f[1])
		case "cosign":
			assert.Equal(t, []string{"cosign", "sign", "--yes"}, f[:3], "keyless signing: %s", line)
			signed = append(signed, f[len(f)-1])
		}
	}
	var want []string
	for _, img := range images.Buildable() {
		want = append(want, registry+"/"+img.Name+"@"+fakeDigest(img.Name, "stamped"))
	}
	sort.Strings(want)
	sort.Strings(pushed)
	sort.Strings(signed)
	assert.Equal(t, want, pushed, "every image is pushed, built with --config=release")
	assert.Equal(t, want, signed, "each pushed index is signed by its digest")

	// What the workflow prints and records: exactly the pushed references.
	summaryData, err := os.ReadFile(summary)
	require.NoError(t, err)
	refRE := regexp.MustCompile(`[a-z0-9./_-]+@sha256:[0-9a-f]{64}`)
	printed := refRE.FindAllString(string(summaryData), -1)
	sort.Strings(printed)
	assert.Equal(t, want, printed, "the job summary lists the pushed references")

	for _, img := range images.Buildable() {
		d, err := os.ReadFile(filepath.Join(work, "out", "digests", img.Name+".digest"))
		require.NoError(t, err)
		assert.Equal(t, fakeDigest(img.Name, "stamped"), strings.TrimSpace(string(d)), "out/digests/%s.digest", img.Name)
	}

	// The provenance subjects are the pushed digests, named by repository.
	checksums := readEnvFile(t, ghOut)["checksums"]
	require.NotEmpty(t, checksums, "the push step names its checksums file in its outputs")
	attest := stepNamed(t, w, "Attest build provenance")
	assert.Equal(t, "${{ steps.push.outputs.checksums }}", attest.With["subject-checksums"])
	assert.Equal(t, "push", stepNamed(t, w, "Push, sign and record").ID)
	sums, err := os.ReadFile(filepath.Join(work, checksums))
	require.NoError(t, err)
	var subjects []string
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		hex, name, ok := strings.Cut(line, "  ")
		require.True(t, ok, "shasum format: %q", line)
		subjects = append(subjects, name+"@sha256:"+hex)
	}
	sort.Strings(subjects)
	assert.Equal(t, want, subjects)

	// The uploaded manifests pin the pushed digests and nothing else.
	manifests, err := os.ReadFile(filepath.Join(work, "kubeopencode.yaml"))
	require.NoError(t, err)
	rendered := refRE.FindAllString(string(manifests), -1)
	sort.Strings(rendered)
	assert.Equal(t, want, rendered)
}

// TestWorkflowRefusesManifestsThatPinOtherDigests: were the manifests built
// without the push's flags, their digests would not be the pushed ones; the
// render step must fail rather than upload them.
func TestWorkflowRefusesManifestsThatPinOtherDigests(t *testing.T) {
	w := readWorkflow(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "work", "out", "digests"), 0o755))
	require.NoError(t, os.MkdirAll(bin, 0o755))
	// A bazel whose //:manifests ignores --config=release.
	broken := strings.Replace(fakeBazel, `--config=release) config=stamped ;;`, `--config=release) ;;`, 1)
	require.NoError(t, os.WriteFile(filepath.Join(bin, "bazel"), []byte(broken), 0o755))
	for _, img := range images.Buildable() {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "work", "out", "digests", img.Name+".digest"), []byte(fakeDigest(img.Name, "stamped")+"\n"), 0o644))
	}
	s := stepNamed(t, w, "Render the install manifests")
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", s.Run)
	cmd.Dir = filepath.Join(dir, "work")
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "REGISTRY=ghcr.io/kubeopencode", "FAKE_LOG=" + filepath.Join(dir, "log"), "FAKE_IMAGES=" + strings.Join(images.Names(), " ")}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the step must fail:\n%s", out)
	assert.Regexp(t, `kubeopencode.yaml does not pin [a-z-]+ to the pushed sha256:`, string(out))
}
