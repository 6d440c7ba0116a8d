package envtest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/tools/cluster/envtest"
)

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.kubeopencode.io
spec:
  group: example.kubeopencode.io
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
`

func TestForTestInstallsCRDsAndServesObjects(t *testing.T) {
	crds := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(crds, "widget.yaml"), []byte(widgetCRD), 0o644))

	cfg := envtest.ForTest(t, crds)

	c, err := client.New(cfg, client.Options{})
	require.NoError(t, err)
	ctx := t.Context()

	widget := &unstructured.Unstructured{}
	widget.SetGroupVersionKind(schema.GroupVersionKind{Group: "example.kubeopencode.io", Version: "v1", Kind: "Widget"})
	widget.SetNamespace("default")
	widget.SetName("w")
	require.NoError(t, unstructured.SetNestedField(widget.Object, int64(3), "spec", "size"))
	require.NoError(t, c.Create(ctx, widget))

	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(widget.GroupVersionKind())
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "w"}, got))
	size, _, err := unstructured.NestedInt64(got.Object, "spec", "size")
	require.NoError(t, err)
	assert.Equal(t, int64(3), size)

	// The CRD's schema is enforced by the real API server.
	bad := widget.DeepCopy()
	bad.SetName("bad")
	bad.SetResourceVersion("")
	require.NoError(t, unstructured.SetNestedField(bad.Object, int64(0), "spec", "size"))
	assert.Error(t, c.Create(ctx, bad), "size below the schema minimum is rejected")

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cm"}, Data: map[string]string{"k": "v"}}
	require.NoError(t, c.Create(ctx, cm))
	var gotCM corev1.ConfigMap
	require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(cm), &gotCM))
	assert.Equal(t, "v", gotCM.Data["k"])
}

func TestStartFailsOnMissingCRDDirectory(t *testing.T) {
	_, _, err := envtest.Start(t.Context(), nil, filepath.Join(t.TempDir(), "missing"))
	assert.Error(t, err)
}
