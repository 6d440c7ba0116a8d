package cluster_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// TestRealNode runs Jobs in real containers on a kubelet with containerd:
// restricted pods pulled by digest from a registry on loopback, exit codes and
// logs as a user sees them, and a Stop that leaves no container behind.
func TestRealNode(t *testing.T) {
	requireRealNodeHost(t)
	image := pushExiterImage(t)

	c, cs := startCluster(t, cluster.Options{RealNode: true, Progress: t.Output()})
	assert.Equal(t, []string{cluster.RealNodeName}, c.NodeNames)

	t.Run("jobs", func(t *testing.T) {
		t.Run("Succeeds", func(t *testing.T) {
			t.Parallel()
			ns := restrictedNamespace(t, cs)
			job := createRealJob(t, cs, ns, "ok", image, 0)
			waitJobCondition(t, cs, job, batchv1.JobComplete)
			pod := onlyPod(t, cs, job)
			assert.Equal(t, cluster.RealNodeName, pod.Spec.NodeName)
			assert.Equal(t, "hello from ok\n", podLogs(t, cs, pod, "main"))
			assert.Equal(t, "init of ok\n", podLogs(t, cs, pod, "init"))
		})
		t.Run("FailsWithExitCode", func(t *testing.T) {
			t.Parallel()
			ns := restrictedNamespace(t, cs)
			job := createRealJob(t, cs, ns, "bad", image, 3)
			waitJobCondition(t, cs, job, batchv1.JobFailed)
			state := terminated(t, onlyPod(t, cs, job))
			assert.Equal(t, int32(3), state.ExitCode)
			assert.Equal(t, "Error", state.Reason)
		})
		t.Run("ReachesAPIServerThroughKubernetesService", func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, "10.96.0.1:443", c.APIServiceAddress)
			ns := restrictedNamespace(t, cs)
			job := newRealJob(ns, "api", image, 0)
			job.Spec.Template.Spec.AutomountServiceAccountToken = ptr.To(true)
			job.Spec.Template.Spec.Containers[0].Env = append(job.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "CHECK_API", Value: "1"})
			job, err := cs.BatchV1().Jobs(ns).Create(t.Context(), job, metav1.CreateOptions{})
			require.NoError(t, err)
			waitJobCondition(t, cs, job, batchv1.JobComplete)
			// The service account's CA verified the serving certificate for
			// 10.96.0.1, and the token was accepted.
			logs := podLogs(t, cs, onlyPod(t, cs, job), "main")
			assert.Contains(t, logs, "api https://10.96.0.1:443/version 200 ")
			assert.Contains(t, logs, `"gitVersion": "v1.37.2"`)
		})
	})

	t.Run("StopLeavesNoContainers", func(t *testing.T) {
		// A Deployment's pod comes back whenever it is deleted; Stop must
		// not wait on it.
		ns := restrictedNamespace(t, cs)
		job := newRealJob(ns, "forever", image, 0)
		_, err := cs.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "forever", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "forever"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "forever"}},
					Spec: func() corev1.PodSpec {
						spec := job.Spec.Template.Spec
						spec.RestartPolicy = corev1.RestartPolicyAlways
						spec.Containers[0].Env = append(spec.Containers[0].Env, corev1.EnvVar{Name: "SLEEP", Value: "1h"})
						return spec
					}(),
				},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		require.NoError(t, wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=forever"})
			return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning, nil
		}), "the Deployment's pod runs")

		pids := c.PIDs()
		require.Contains(t, pids, "kubelet")
		require.Contains(t, pids, "containerd")
		dir := c.Dir
		began := time.Now()
		require.NoError(t, c.Stop())
		assert.Less(t, time.Since(began), 30*time.Second, "Stop waited on the Deployment's pod")
		out, err := exec.Command("ip", "-o", "addr", "show", "dev", "lo").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.NotContains(t, string(out), "10.96.0.1", "the kubernetes Service address is removed from lo")
		for n, pid := range pids {
			assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "%s (pid %d) still exists", n, pid)
		}
		out, _ = exec.Command("pgrep", "-f", "containerd-shim-runc-v2.*"+dir).CombinedOutput()
		assert.Empty(t, strings.TrimSpace(string(out)), "runc shims of the node")
		mounts, err := os.ReadFile("/proc/self/mountinfo")
		require.NoError(t, err)
		assert.NotContains(t, string(mounts), dir, "mounts under the cluster directory")
		_, err = os.Stat(dir)
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
}

// requireRealNodeHost skips unless the host can run a real node: root and the
// Debian packages containerd, runc and containernetworking-plugins.
func requireRealNodeHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a real node needs root")
	}
	for _, tool := range []string{"containerd", "runc", "ctr"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("a real node needs %s: apt-get install -y containerd runc containernetworking-plugins", tool)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("a real node needs the CNI plugins: apt-get install -y containernetworking-plugins")
	}
}

// pushExiterImage builds testdata/exiter into a one-layer image, pushes it to
// a registry on loopback and returns its reference by digest.
func pushExiterImage(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "exiter")
	build := exec.Command("go", "build", "-o", bin, "./testdata/exiter")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	data, err := os.ReadFile(bin)
	require.NoError(t, err)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "exiter", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}))
	_, err = tw.Write(data)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	require.NoError(t, err)
	img, err := mutate.AppendLayers(empty.Image, layer)
	require.NoError(t, err)
	img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/exiter"}})
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	require.NoError(t, err)

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.NewTag(host+"/exiter:test", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img))
	digest, err := img.Digest()
	require.NoError(t, err)
	return host + "/exiter@" + digest.String()
}

func restrictedNamespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "real-",
			Labels:       map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return ns.Name
}

// createRealJob runs image on the real node as the operator's Jobs run:
// restricted, non-root 65532, read-only root filesystem, an init container.
func createRealJob(t *testing.T, cs kubernetes.Interface, ns, name, image string, exitCode int) *batchv1.Job {
	t.Helper()
	job, err := cs.BatchV1().Jobs(ns).Create(t.Context(), newRealJob(ns, name, image, exitCode), metav1.CreateOptions{})
	require.NoError(t, err)
	return job
}

func newRealJob(ns, name, image string, exitCode int) *batchv1.Job {
	sc := &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65532),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					NodeSelector:                 map[string]string{"kubeopencode.io/real-node": "true"},
					AutomountServiceAccountToken: ptr.To(false),
					InitContainers: []corev1.Container{{
						Name: "init", Image: image, Args: []string{"init", "of", name}, SecurityContext: sc,
					}},
					Containers: []corev1.Container{{
						Name: "main", Image: image, Args: []string{"hello", "from", name}, SecurityContext: sc,
						Env: []corev1.EnvVar{{Name: "EXIT_CODE", Value: strconv.Itoa(exitCode)}},
					}},
				},
			},
		},
	}
	return job
}

func podLogs(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod, container string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	require.NoError(t, err, "logs of %s/%s container %s", pod.Namespace, pod.Name, container)
	return string(out)
}
