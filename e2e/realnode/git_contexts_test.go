package realnode_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/internal/gittest"
)

// gitSecrets creates the Git credentials Secrets of a namespace: "git-http"
// (username and password) and "git-ssh" (private key and known_hosts).
func gitSecrets(t *testing.T, ns string) {
	t.Helper()
	create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "git-http", Namespace: ns},
		StringData: map[string]string{"username": env.git.username, "password": env.git.password},
	})
	create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "git-ssh", Namespace: ns},
		Data:       map[string][]byte{"ssh-privatekey": env.git.sshKeyPEM, "known_hosts": []byte(env.git.knownHostLine)},
	})
}

// TestGitContexts: git-init clones from the host over HTTP with basic auth
// (into the workspace) and over SSH with a verified host key (outside the
// workspace, mounted from the repos volume); the agent sees both checkouts
// and the Task records the commits.
func TestGitContexts(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	gitSecrets(t, ns)
	create(t, echoAgent(ns, "default", "tree",
		"cat=src-http/README.md", "stat=/workspace/src-http/run.sh",
		"cat=/opt/repo-ssh/src/greeting.go", "stat=/opt/repo-ssh/run.sh", "stat=/opt/repo-ssh/.git",
		"cat=/opt/only-src/greeting.go", "stat=/opt/only-src/greeting.go"))
	create(t, task(ns, "git", "", "Read the code.",
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: "src-http", Git: &v1alpha1.GitContext{
			Repository: env.git.httpURL, SecretRef: &v1alpha1.LocalSecretReference{Name: "git-http"},
		}},
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: "/opt/repo-ssh", Git: &v1alpha1.GitContext{
			Repository: env.git.sshURL, Ref: "main", SecretRef: &v1alpha1.LocalSecretReference{Name: "git-ssh"},
		}},
		// Only one directory of the repository, mounted with subPath.
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: "/opt/only-src", Git: &v1alpha1.GitContext{
			Repository: env.git.httpURL, Path: "src", SecretRef: &v1alpha1.LocalSecretReference{Name: "git-http"},
		}},
	))
	tk := waitEnded(t, ns, "git")
	requireCompleted(t, tk)
	out := agentOutput(t, tk)

	assert.Equal(t, env.git.Files["README.md"], out.cats["src-http/README.md"])
	assert.Equal(t, env.git.Files["src/greeting.go"], out.cats["/opt/repo-ssh/src/greeting.go"])
	// The executable bit survives the clone, and the group gets the owner's bits.
	assert.True(t, strings.HasPrefix(out.stats["/workspace/src-http/run.sh"], "-rwxrwxr-x 65532:65532 "), "run.sh: %q", out.stats["/workspace/src-http/run.sh"])
	assert.True(t, strings.HasPrefix(out.stats["/opt/repo-ssh/run.sh"], "-rwxrwxr-x 65532:65532 "), "run.sh: %q", out.stats["/opt/repo-ssh/run.sh"])
	assert.Contains(t, out.stats, "/opt/repo-ssh/.git")
	assert.Contains(t, out.stats, "/workspace/src-http/src/greeting.go")
	assert.Equal(t, env.git.Files["src/greeting.go"], out.cats["/opt/only-src/greeting.go"])
	assert.True(t, strings.HasPrefix(out.stats["/opt/only-src/greeting.go"], preparedFile+" "), "greeting.go: %q", out.stats["/opt/only-src/greeting.go"])

	require.Len(t, tk.Status.Repositories, 3, describeTask(tk))
	for i, want := range []struct{ url, mountPath, inAgent string }{
		{env.git.httpURL, "src-http", "/workspace/src-http"},
		{env.git.sshURL, "/opt/repo-ssh", "/opt/repo-ssh"},
		{env.git.httpURL, "/opt/only-src", "/opt/only-src"},
	} {
		got := tk.Status.Repositories[i]
		assert.Equal(t, want.url, got.Repository)
		assert.Equal(t, env.git.Commit, got.Commit)
		t.Run(fmt.Sprintf("RepositoryMountPath%d", i), func(t *testing.T) {
			// The API documents mountPath as the Git context's mountPath:
			// a user must be able to tell the checkouts apart by it, not
			// by the init container's internal paths.
			assert.Contains(t, []string{want.mountPath, want.inAgent}, got.MountPath, "status.repositories[%d].mountPath", i)
		})
	}
	require.NotNil(t, tk.Status.Images)
	assert.Equal(t, env.images["git-init"], tk.Status.Images.GitInit)

	pod := taskPod(t, tk)
	httpLog := containerLogs(t, pod, "git-init-0")
	assert.Contains(t, httpLog, "WARNING: "+env.git.httpURL+" uses plain http://")
	sshLog := containerLogs(t, pod, "git-init-1")
	for _, l := range []string{httpLog, sshLog, out.raw} {
		assert.NotContains(t, l, env.git.password, "the Git password leaked into a log")
	}
}

// TestAgentWithOtherUID: an agent that runs as UID 1000, not the init
// containers' 65532, edits every kind of prepared file (task.md, a Text
// context, a Git checkout), creates a file in the checkout, and reads its
// credentials given as an environment variable and as a file.
func TestAgentWithOtherUID(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	gitSecrets(t, ns)
	create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-creds", Namespace: ns},
		StringData: map[string]string{"token": "tok-e2e-123", "config": "endpoint: https://llm.example\n"},
	})
	a := echoAgent(ns, "uid1000", "id",
		"append=task.md:edited by the agent", "append=notes.md:edited by the agent",
		"append=repo/README.md:edited by the agent", "append=repo/src/new.go:package src",
		"cat=task.md", "cat=notes.md", "cat=repo/README.md", "cat=repo/src/new.go",
		"stat=/workspace/repo/src/new.go",
		"append=private.md:edited by the agent", "cat=private.md", "stat=/workspace/private.md",
		"env=API_TOKEN", "cat=/var/run/e2e/config", "stat=/var/run/e2e/config")
	a.Spec.PodSpec = &v1alpha1.AgentPodSpec{SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000)}}
	a.Spec.Credentials = []v1alpha1.Credential{
		{Name: "token", SecretRef: v1alpha1.SecretKeyReference{Name: "agent-creds", Key: "token"}, Env: "API_TOKEN"},
		{Name: "config", SecretRef: v1alpha1.SecretKeyReference{Name: "agent-creds", Key: "config"}, MountPath: "/var/run/e2e/config"},
	}
	create(t, a)
	create(t, task(ns, "uid", "uid1000", "Edit the files.",
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeText, MountPath: "notes.md", Text: text("notes\n")},
		// 0600 for the owner (65532) becomes 0660: the agent gets in through the group.
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeText, MountPath: "private.md", FileMode: ptr.To[int32](0o600), Text: text("private\n")},
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: "repo", Git: &v1alpha1.GitContext{
			Repository: env.git.httpURL, SecretRef: &v1alpha1.LocalSecretReference{Name: "git-http"},
		}},
	))
	tk := waitEnded(t, ns, "uid")
	requireCompleted(t, tk)
	out := agentOutput(t, tk)

	assert.True(t, strings.HasPrefix(out.id, "uid=1000 "), "id: %q", out.id)
	assert.Contains(t, out.id, "65532", "the pod's fsGroup is a supplementary group: %q", out.id)
	assert.Equal(t, []string{"task.md", "notes.md", "repo/README.md", "repo/src/new.go", "private.md"}, out.appended)
	assert.Equal(t, "private\nedited by the agent\n", out.cats["private.md"])
	assert.True(t, strings.HasPrefix(out.stats["/workspace/private.md"], "-rw-rw---- 65532:65532 "), "private.md: %q", out.stats["/workspace/private.md"])
	assert.Equal(t, "Edit the files.\nedited by the agent\n", out.cats["task.md"])
	assert.Equal(t, "notes\nedited by the agent\n", out.cats["notes.md"])
	assert.Equal(t, env.git.Files["README.md"]+"edited by the agent\n", out.cats["repo/README.md"])
	// Created by UID 1000 in a setgid directory: the group stays the fsGroup.
	assert.True(t, strings.HasPrefix(out.stats["/workspace/repo/src/new.go"], "-rw-r--r-- 1000:65532 "), "new.go: %q", out.stats["/workspace/repo/src/new.go"])

	assert.Equal(t, "tok-e2e-123", out.envs["API_TOKEN"])
	assert.Equal(t, "endpoint: https://llm.example\n", out.cats["/var/run/e2e/config"])
	assert.True(t, strings.HasPrefix(out.stats["/var/run/e2e/config"], "-r--r----- 0:65532 "), "credential file: %q", out.stats["/var/run/e2e/config"])
}

// TestGitInitFailures: git-init's one-line reason reaches the Task as
// InitFailed, read from its termination message on a read-only root
// filesystem, and the agent never starts. A wrong password is refused by the
// server and never shown; an SSH host whose key differs from known_hosts is
// refused before any credential is offered.
func TestGitInitFailures(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	wrongPassword := "not-" + env.git.password
	create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-password", Namespace: ns},
		StringData: map[string]string{"username": env.git.username, "password": wrongPassword},
	})
	otherHost, err := knownHostsWithOtherKey(env.git.sshAddr)
	require.NoError(t, err)
	create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-host-key", Namespace: ns},
		Data:       map[string][]byte{"ssh-privatekey": env.git.sshKeyPEM, "known_hosts": []byte(otherHost)},
	})
	create(t, echoAgent(ns, "default", "id"))
	create(t, task(ns, "bad-password", "", "Clone.", v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: "repo", Git: &v1alpha1.GitContext{
		Repository: env.git.httpURL, SecretRef: &v1alpha1.LocalSecretReference{Name: "bad-password"},
	}}))
	create(t, task(ns, "bad-host-key", "", "Clone.", v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: "repo", Git: &v1alpha1.GitContext{
		Repository: env.git.sshURL, SecretRef: &v1alpha1.LocalSecretReference{Name: "bad-host-key"},
	}}))

	for name, wantInMessage := range map[string]string{
		"bad-password": env.git.httpURL,
		"bad-host-key": "does not match known_hosts",
	} {
		tk := waitEnded(t, ns, name)
		assert.Equal(t, v1alpha1.TaskPhaseFailed, tk.Status.Phase, name)
		c := condition(tk, v1alpha1.TaskConditionSucceeded)
		require.NotNil(t, c, describeTask(tk))
		assert.Equal(t, v1alpha1.ReasonInitFailed, c.Reason, describeTask(tk))
		t.Logf("%s: %s", name, c.Message)
		assert.Contains(t, c.Message, "git-init-0", name)
		assert.Contains(t, c.Message, wantInMessage, name)
		assert.NotContains(t, c.Message, wrongPassword, name)
		assert.Nil(t, tk.Status.ExitCode, "%s: the agent never ran", name)
		pod := taskPod(t, tk)
		for _, s := range pod.Status.ContainerStatuses {
			assert.Nil(t, s.State.Running, "%s: agent container", name)
			if s.State.Terminated != nil {
				t.Errorf("%s: the agent ran and exited %d", name, s.State.Terminated.ExitCode)
			}
		}
	}
}

// knownHostsWithOtherKey is a known_hosts line for addr with a key the
// server does not have.
func knownHostsWithOtherKey(addr string) (string, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n", nil
}

// TestGitCheckoutMatchesCommit: a repository with large files stored as
// deltas, absolute symlinks and names Windows reserves (aux.c, con.txt) is
// checked out on the node exactly as committed: every path, mode, blob and
// symlink target the agent sees equals `git ls-tree -r` of the commit.
func TestGitCheckoutMatchesCommit(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	gitSecrets(t, ns)
	create(t, echoAgent(ns, "default", "gitblobs=/workspace/real", "stat=/workspace/real/links/etc"))
	repo := strings.TrimSuffix(env.git.httpURL, "repo.git") + "real.git"
	create(t, task(ns, "real", "", "Review the repository.",
		v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: "real", Git: &v1alpha1.GitContext{
			Repository: repo, SecretRef: &v1alpha1.LocalSecretReference{Name: "git-http"},
		}},
	))
	tk := waitEnded(t, ns, "real")
	requireCompleted(t, tk)
	out := agentOutput(t, tk)

	want := map[string]string{}
	lsTree, err := gittest.RunGit(filepath.Join(env.git.root, "real.git"), "ls-tree", "-r", "-z", env.git.RealCommit)
	require.NoError(t, err)
	for _, rec := range strings.Split(lsTree, "\x00") {
		if rec == "" {
			continue
		}
		meta, p, _ := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		want[p] = f[0] + " " + f[2]
	}
	got := map[string]string{}
	for _, line := range strings.Split(out.raw, "\n") {
		rest, ok := strings.CutPrefix(line, "== blob ")
		if !ok {
			continue
		}
		f := strings.SplitN(rest, " ", 3)
		require.Len(t, f, 3, line)
		p, err := strconv.Unquote(f[2])
		require.NoError(t, err, line)
		got[p] = f[0] + " " + f[1]
	}
	assert.Equal(t, want, got, "the agent's checkout differs from commit %s", env.git.RealCommit)
	assert.Contains(t, got, "drivers/i2c/aux.c")
	assert.True(t, strings.HasSuffix(out.stats["/workspace/real/links/etc"], " -> /etc"), "absolute symlink kept as committed: %q", out.stats["/workspace/real/links/etc"])

	require.Len(t, tk.Status.Repositories, 1, describeTask(tk))
	assert.Equal(t, env.git.RealCommit, tk.Status.Repositories[0].Commit)
	assert.Empty(t, tk.Status.Repositories[0].SubmodulesLeftOut)
}
