package deploy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestControllerObjects: manifests laid out like manifests/rbac and
// manifests/controller (testdata, so the test needs no files outside this
// package), rendered for images pushed to a local registry, create the
// Namespace first and run the controller from its pushed image, telling it
// the init images' pinned references. The shipped manifests themselves are
// deployed by tools/quickstart and e2e/realnode.
func TestControllerObjects(t *testing.T) {
	const prefix = "127.0.0.1:5000/kubeopencode"
	digest := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	refs := map[string]string{
		"controller":   prefix + "/controller@" + digest('a'),
		"git-init":     prefix + "/git-init@" + digest('b'),
		"context-init": prefix + "/context-init@" + digest('c'),
	}
	objs, err := ControllerObjects("testdata", Renderer(prefix, refs))
	require.NoError(t, err)
	require.NotEmpty(t, objs)
	assert.Equal(t, "Namespace", objs[0].GetKind())
	assert.Equal(t, ControllerNamespace, objs[0].GetName())

	var kinds []string
	var deployment *unstructured.Unstructured
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		if o.GetKind() == "Deployment" && o.GetName() == ControllerDeployment {
			deployment = o
		}
	}
	assert.Equal(t, []string{"Namespace", "ClusterRole", "Deployment", "ServiceAccount"}, kinds)
	require.NotNil(t, deployment, "Deployment %s/%s", ControllerNamespace, ControllerDeployment)
	assert.Equal(t, ControllerNamespace, deployment.GetNamespace())
	containers, _, err := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "containers")
	require.NoError(t, err)
	require.Len(t, containers, 1)
	c := containers[0].(map[string]any)
	assert.Equal(t, refs["controller"], c["image"])
	assert.Contains(t, c["args"], "--git-init-image="+refs["git-init"])
	assert.Contains(t, c["args"], "--context-init-image="+refs["context-init"])
}

// TestControllerObjectsNeedsEveryDigest: rendering without an image's
// digest fails rather than deploying an unpinned image.
func TestControllerObjectsNeedsEveryDigest(t *testing.T) {
	_, err := ControllerObjects("testdata", Renderer("127.0.0.1:5000/kubeopencode", map[string]string{
		"controller": "127.0.0.1:5000/kubeopencode/controller@sha256:" + strings.Repeat("a", 64),
	}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "git-init")
}
