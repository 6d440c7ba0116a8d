package realnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubeopencode/kubeopencode/tools/cluster"
	"github.com/kubeopencode/kubeopencode/tools/render"
)

const (
	controllerNamespace  = "kubeopencode-system"
	controllerDeployment = "kubeopencode-controller"
)

// deployController installs what a user installs: the CRDs, the generated
// ClusterRole, and manifests/controller (Namespace, ServiceAccount,
// bindings, Deployment) rendered with tools/render, so the controller runs
// from the image just built and passes the init images' digests on. It
// returns once the Deployment is rolled out.
func deployController(ctx context.Context, c client.Client, repository string, refs map[string]string) error {
	root := filepath.Join("..", "..")
	cfg := env.cluster.RESTConfig()
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(root, "manifests", "crd")},
		ErrorIfPathMissing: true,
		MaxTime:            time.Minute,
	}); err != nil {
		return fmt.Errorf("installing the CRDs: %w", err)
	}
	digests := map[string]string{}
	for name, ref := range refs {
		_, d, _ := strings.Cut(ref, "@")
		digests[name] = d
	}
	files, err := render.Collect([]string{
		filepath.Join(root, "manifests", "rbac"),
		filepath.Join(root, "manifests", "controller"),
	})
	if err != nil {
		return err
	}
	files, err = render.Renderer{Repository: repository, Digests: digests}.RenderFiles(files)
	if err != nil {
		return err
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(f.Content), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	// Namespaces before what lives in them.
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].GetKind() == "Namespace" && objs[j].GetKind() != "Namespace" })
	for _, u := range objs {
		if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return waitFor(ctx, 3*time.Minute, func() (bool, error) {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: controllerNamespace, Name: controllerDeployment}, d); err != nil {
			return false, err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.AvailableReplicas == want && d.Status.Replicas == want, nil
	})
}

// logControllerPod prints the controller pod's state and last log lines,
// for a failed set-up or test.
func logControllerPod(cs kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods(controllerNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + controllerDeployment})
	if err != nil {
		fmt.Fprintln(os.Stderr, "listing controller pods:", err)
		return
	}
	for _, p := range pods.Items {
		fmt.Fprintf(os.Stderr, "controller pod %s: phase %s\n", p.Name, p.Status.Phase)
		for _, s := range p.Status.ContainerStatuses {
			fmt.Fprintf(os.Stderr, "  container %s ready=%v restarts=%d state=%+v\n", s.Name, s.Ready, s.RestartCount, s.State)
		}
		tail := int64(40)
		out, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "  logs:", err)
			continue
		}
		fmt.Fprintf(os.Stderr, "  last log lines:\n%s\n", out)
	}
}

// waitFor polls cond every 200ms until it holds or timeout passes; the last
// error cond returned is part of the timeout's error.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%w after %s: %v", errTimeout, timeout, err)
			}
			return fmt.Errorf("%w after %s", errTimeout, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestControllerRunsFromItsImage: the controller that serves every other
// test is the pod of the shipped Deployment, on the real node, running the
// image built for this run (pulled by digest).
func TestControllerRunsFromItsImage(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	pods, err := env.cs.CoreV1().Pods(controllerNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + controllerDeployment})
	require.NoError(t, err)
	require.Len(t, pods.Items, 1)
	pod := pods.Items[0]
	assert.Equal(t, cluster.RealNodeName, pod.Spec.NodeName)
	require.Len(t, pod.Status.ContainerStatuses, 1)
	st := pod.Status.ContainerStatuses[0]
	assert.True(t, st.Ready, "controller container ready")
	assert.Equal(t, env.images["controller"], pod.Spec.Containers[0].Image)
	_, digest, _ := strings.Cut(env.images["controller"], "@")
	assert.Contains(t, st.ImageID, digest, "the image the node runs")
	assert.Contains(t, pod.Spec.Containers[0].Args, "--git-init-image="+env.images["git-init"])
	assert.Contains(t, pod.Spec.Containers[0].Args, "--context-init-image="+env.images["context-init"])
}
