package realnode_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeopencode/kubeopencode/tools/cluster"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
)

// logControllerPod prints the controller pod's state and last log lines,
// for a failed set-up or test.
func logControllerPod(cs kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deploy.LogControllerPods(ctx, cs, os.Stderr)
}

// TestControllerRunsFromItsImage: the controller that serves every other
// test is the pod of the shipped Deployment, on the real node, running the
// image built for this run (pulled by digest).
func TestControllerRunsFromItsImage(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	pods, err := env.cs.CoreV1().Pods(deploy.ControllerNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + deploy.ControllerDeployment})
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
