package controller_test

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
)

// TestSystemImageTagIsPinnedBeforeAnyJob selects the init images by tag in
// KubeOpenCodeConfig: the controller resolves the tag in a real registry and
// the Job runs the digest; while the tag cannot be resolved, the Task waits
// and says why.
func TestSystemImageTagIsPinnedBeforeAnyJob(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	pushed := map[string]string{}
	pushImage := func(image string) {
		img, err := random.Image(256, 1)
		require.NoError(t, err)
		tag, err := name.NewTag(host + "/mirror/" + image + ":v2.0.0")
		require.NoError(t, err)
		require.NoError(t, remote.Write(tag, img))
		d, err := img.Digest()
		require.NoError(t, err)
		pushed[image] = host + "/mirror/" + image + "@" + d.String()
	}

	startController(t, func(o *controller.Options) { o.ImageResolveTTL = 500 * time.Millisecond })
	cfg := &v1alpha1.KubeOpenCodeConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
		Spec: v1alpha1.KubeOpenCodeConfigSpec{SystemImage: &v1alpha1.SystemImage{
			Registry: host + "/mirror", Tag: "v2.0.0", ImagePullPolicy: corev1.PullAlways,
		}},
	}
	create(t, cfg)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), cfg) })

	ns := namespace(t)
	create(t, newAgent(ns, "default", nil), newTask(ns, "pinned"))
	task := waitPhase(t, ns, "pinned", v1alpha1.TaskPhasePending)
	c := condition(task, v1alpha1.TaskConditionReady)
	assert.Equal(t, v1alpha1.ReasonImageResolutionFailed, c.Reason)
	assert.Contains(t, c.Message, "cannot resolve "+host+"/mirror/git-init:v2.0.0 to a digest")
	_, exists := getJob(t, ns, "pinned")
	assert.False(t, exists, "no Job is created with an unresolved tag")

	pushImage("git-init")
	pushImage("context-init")
	task = waitPhase(t, ns, "pinned", v1alpha1.TaskPhaseRunning)
	assert.Equal(t, pushed["git-init"], task.Status.Images.GitInit)
	assert.Equal(t, pushed["context-init"], task.Status.Images.ContextInit)

	job, _ := getJob(t, ns, "pinned")
	init := job.Spec.Template.Spec.InitContainers[0]
	assert.Equal(t, pushed["context-init"], init.Image)
	assert.Equal(t, corev1.PullAlways, init.ImagePullPolicy)
}
