// Package contract_test checks the shipped Argo Events example against a
// real API server: the Tasks the Sensor renders from recorded GitHub
// deliveries pass the Task CRD's validation, and the Sensor's ServiceAccount,
// under the shipped RBAC, can create them and do nothing else.
package contract_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/sjson"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/internal/argo"
	"github.com/kubeopencode/kubeopencode/tools/cluster/envtest"
)

const (
	namespace      = "kubeopencode-github"
	serviceAccount = "kubeopencode-sensor"
)

var (
	tasks   = schema.GroupVersionResource{Group: "kubeopencode.io", Version: "v1alpha1", Resource: "tasks"}
	agents  = schema.GroupVersionResource{Group: "kubeopencode.io", Version: "v1alpha1", Resource: "agents"}
	secrets = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
)

func repo(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", ".."}, parts...)...)
}

// applyManifest creates every object of a manifest file as the admin.
func applyManifest(t *testing.T, admin *dynamic.DynamicClient, file string) {
	t.Helper()
	f, err := os.Open(repo("manifests", "argo-events", file))
	require.NoError(t, err)
	defer f.Close()
	docs, err := argo.ReadDocuments(file, f)
	require.NoError(t, err)
	for _, d := range docs {
		obj := &unstructured.Unstructured{Object: d.Object}
		gvk := obj.GroupVersionKind()
		resource := map[string]string{
			"Namespace": "namespaces", "ServiceAccount": "serviceaccounts",
			"Role": "roles", "RoleBinding": "rolebindings",
		}[gvk.Kind]
		require.NotEmpty(t, resource, "%s: unexpected kind %s", file, gvk.Kind)
		gvr := gvk.GroupVersion().WithResource(resource)
		var ri dynamic.ResourceInterface = admin.Resource(gvr)
		if obj.GetNamespace() != "" {
			ri = admin.Resource(gvr).Namespace(obj.GetNamespace())
		}
		_, err := ri.Create(context.Background(), obj, metav1.CreateOptions{})
		require.NoError(t, err, "%s: %s %s", file, gvk.Kind, obj.GetName())
	}
}

func shippedSensor(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(repo("manifests", "argo-events", "sensor-github.yaml"))
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, yaml.Unmarshal(data, &obj))
	return &unstructured.Unstructured{Object: obj}
}

func delivery(t *testing.T, eventType, file string) []byte {
	t.Helper()
	body, err := os.ReadFile(repo("internal", "argo", "testdata", "github", file))
	require.NoError(t, err)
	data, err := argo.GitHubEventData(eventType, "0b9c4f1e-3a51-4f5e-9d0c-1f2e3a4b5c6d", body)
	require.NoError(t, err)
	return data
}

func TestSensorServiceAccountCreatesRenderedTasksAndNothingElse(t *testing.T) {
	cfg := envtest.ForTest(t, repo("manifests", "crd"))
	ctx := context.Background()
	admin, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	applyManifest(t, admin, "namespace.yaml")
	applyManifest(t, admin, "rbac.yaml")

	// The Sensor pod authenticates as its ServiceAccount; impersonating it
	// puts the shipped Role to the test, not the admin's rights.
	saCfg := rest.CopyConfig(cfg)
	saCfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + serviceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	sensorClient, err := dynamic.NewForConfig(saCfg)
	require.NoError(t, err)

	rendered := map[string]*unstructured.Unstructured{}
	for trigger, ev := range map[string]map[string][]byte{
		"review-pull-request": {"pull-request": delivery(t, "pull_request", "pull_request.opened.json")},
		"review-on-comment":   {"review-comment": delivery(t, "issue_comment", "issue_comment.created.json")},
	} {
		obj, err := argo.RenderTrigger(shippedSensor(t), trigger, ev)
		require.NoError(t, err, trigger)
		rendered[trigger] = obj
	}

	var created []string
	for trigger, obj := range rendered {
		t.Run("create Task from "+trigger, func(t *testing.T) {
			got, err := sensorClient.Resource(tasks).Namespace(namespace).Create(ctx, obj, metav1.CreateOptions{})
			require.NoError(t, err, "the API server must accept the Task the Sensor renders, created as the Sensor")
			assert.True(t, strings.HasPrefix(got.GetName(), "pr-review-"), got.GetName())
			created = append(created, got.GetName())

			stored, err := admin.Resource(tasks).Namespace(namespace).Get(ctx, got.GetName(), metav1.GetOptions{})
			require.NoError(t, err)
			wantDesc, _, _ := unstructured.NestedString(obj.Object, "spec", "description")
			gotDesc, _, _ := unstructured.NestedString(stored.Object, "spec", "description")
			assert.Equal(t, wantDesc, gotDesc)
			wantCtx, _, _ := unstructured.NestedSlice(obj.Object, "spec", "contexts")
			gotCtx, _, _ := unstructured.NestedSlice(stored.Object, "spec", "contexts")
			require.Len(t, gotCtx, 1)
			assert.Equal(t, wantCtx[0].(map[string]any)["git"].(map[string]any)["ref"], gotCtx[0].(map[string]any)["git"].(map[string]any)["ref"],
				"the CRD must keep the ref the Sensor set (no pruning, no defaulting over it)")
			assert.Equal(t, trigger, stored.GetLabels()[argo.LabelTrigger])
		})
	}
	require.Len(t, created, 2)

	forbidden := func(t *testing.T, what string, err error) {
		t.Helper()
		require.Error(t, err, what+" must be denied")
		assert.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", what, err)
	}
	t.Run("cannot read, list, change or delete Tasks", func(t *testing.T) {
		_, err := sensorClient.Resource(tasks).Namespace(namespace).Get(ctx, created[0], metav1.GetOptions{})
		forbidden(t, "get Task", err)
		_, err = sensorClient.Resource(tasks).Namespace(namespace).List(ctx, metav1.ListOptions{})
		forbidden(t, "list Tasks", err)
		err = sensorClient.Resource(tasks).Namespace(namespace).Delete(ctx, created[0], metav1.DeleteOptions{})
		forbidden(t, "delete Task", err)
		_, err = sensorClient.Resource(tasks).Namespace(namespace).Patch(ctx, created[0], "application/merge-patch+json",
			[]byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
		forbidden(t, "patch Task", err)
	})
	t.Run("cannot create Tasks in another namespace", func(t *testing.T) {
		obj := rendered["review-pull-request"].DeepCopy()
		obj.SetNamespace("default")
		_, err := sensorClient.Resource(tasks).Namespace("default").Create(ctx, obj, metav1.CreateOptions{})
		forbidden(t, "create Task in default", err)
	})
	t.Run("cannot create Agents", func(t *testing.T) {
		agent := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
			"metadata": map[string]any{"name": "default", "namespace": namespace},
			"spec":     map[string]any{},
		}}
		_, err := sensorClient.Resource(agents).Namespace(namespace).Create(ctx, agent, metav1.CreateOptions{})
		forbidden(t, "create Agent", err)
	})
	t.Run("a misspelled dataKey leaves a Task the API server rejects", func(t *testing.T) {
		// Argo reads the Sensor with exact field names, so datakey is gone and
		// the parameter receives the whole event: the Task is never created.
		s := shippedSensor(t)
		triggers, _, err := unstructured.NestedSlice(s.Object, "spec", "triggers")
		require.NoError(t, err)
		params := triggers[0].(map[string]any)["template"].(map[string]any)["k8s"].(map[string]any)["parameters"].([]any)
		misspelt := false
		for _, p := range params {
			p := p.(map[string]any)
			if p["dest"] == "spec.contexts.0.git.ref" {
				src := p["src"].(map[string]any)
				src["datakey"] = src["dataKey"]
				delete(src, "dataKey")
				misspelt = true
			}
		}
		require.True(t, misspelt)
		require.NoError(t, unstructured.SetNestedSlice(s.Object, triggers, "spec", "triggers"))
		obj, err := argo.RenderTrigger(s, "review-pull-request", map[string][]byte{
			"pull-request": delivery(t, "pull_request", "pull_request.opened.json"),
		})
		require.NoError(t, err, "the Sensor renders the Task; the API server is what refuses it")
		ref, _, _ := unstructured.NestedSlice(obj.Object, "spec", "contexts")
		t.Logf("rendered git.ref is %d bytes", len(ref[0].(map[string]any)["git"].(map[string]any)["ref"].(string)))
		_, err = sensorClient.Resource(tasks).Namespace(namespace).Create(ctx, obj, metav1.CreateOptions{})
		require.Error(t, err)
		assert.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
		assert.Contains(t, err.Error(), "spec.contexts[0].git.ref")
	})
	t.Run("cannot read Secrets", func(t *testing.T) {
		_, err := sensorClient.Resource(secrets).Namespace(namespace).List(ctx, metav1.ListOptions{})
		forbidden(t, "list Secrets", err)
		_, err = sensorClient.Resource(secrets).Namespace(namespace).Get(ctx, "github-webhook", metav1.GetOptions{})
		forbidden(t, "get Secret", err)
	})
}

// TestMigratedTriggersCreateTasksTheAPIServerAccepts runs every trigger of
// the migration tool's golden Sensors on recorded deliveries and creates
// each Task it renders on a real API server: the names, annotations and
// descriptions the tool writes must pass the Task CRD's validation.
func TestMigratedTriggersCreateTasksTheAPIServerAccepts(t *testing.T) {
	cfg := envtest.ForTest(t, repo("manifests", "crd"))
	ctx := context.Background()
	admin, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ci"}}}
	_, err = admin.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, ns, metav1.CreateOptions{})
	require.NoError(t, err)

	var deliveries [][]byte
	for _, d := range []struct {
		eventType, file string
		edits           []any
	}{
		{"pull_request", "pull_request.opened.json", nil},
		{"pull_request", "pull_request.opened.json", []any{"action", "reopened"}},
		{"pull_request", "pull_request.opened.json", []any{"action", "edited"}},
		{"pull_request", "pull_request.opened.json", []any{"action", "synchronize"}},
		{"pull_request", "pull_request.opened.json", []any{"action", "ready_for_review"}},
		{"pull_request", "pull_request.opened.json", []any{"action", "converted_to_draft"}},
		{"pull_request", "pull_request.opened.json", []any{"action", "labeled", "label", map[string]any{"name": "needs-triage"}}},
		{"pull_request", "pull_request.opened.json", []any{"action", "closed", "pull_request.merged", true}},
		{"pull_request", "pull_request.opened.json", []any{"pull_request.additions", 900}},
		{"issue_comment", "issue_comment.created.json", nil},
		{"issue_comment", "issue_comment.created.json", []any{"comment.body", "/review LGTM"}},
		{"issues", "issue_comment.created.json", []any{"action", "opened"}},
		{"push", "push.json", nil},
		{"push", "push.json", []any{"ref", "refs/heads/release"}},
	} {
		body, err := os.ReadFile(repo("internal", "argo", "testdata", "github", d.file))
		require.NoError(t, err)
		for i := 0; i < len(d.edits); i += 2 {
			body, err = sjson.SetBytes(body, d.edits[i].(string), d.edits[i+1])
			require.NoError(t, err)
		}
		data, err := argo.GitHubEventData(d.eventType, "0b9c4f1e-3a51-4f5e-9d0c-1f2e3a4b5c6d", body)
		require.NoError(t, err)
		deliveries = append(deliveries, data)
	}

	goldens, err := filepath.Glob(repo("tools", "migrate-webhooktrigger", "testdata", "*.golden.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, goldens)
	created := 0
	for _, file := range goldens {
		f, err := os.Open(file)
		require.NoError(t, err)
		docs, err := argo.ReadDocuments(file, f)
		f.Close()
		require.NoError(t, err)
		for _, d := range docs {
			if d.Kind() != "Sensor" {
				continue
			}
			sensor := &unstructured.Unstructured{Object: d.Object}
			deps, _, _ := unstructured.NestedSlice(sensor.Object, "spec", "dependencies")
			triggers, _, _ := unstructured.NestedSlice(sensor.Object, "spec", "triggers")
			for _, tr := range triggers {
				name, _, _ := unstructured.NestedString(tr.(map[string]any), "template", "name")
				fired := 0
				for _, data := range deliveries {
					events := map[string][]byte{}
					for _, dep := range deps {
						events[dep.(map[string]any)["name"].(string)] = data
					}
					objs, err := argo.RenderTriggerAll(sensor, name, events)
					if errors.Is(err, argo.ErrNotTriggered) {
						continue
					}
					require.NoError(t, err, "%s trigger %s", file, name)
					for _, obj := range objs {
						got, err := admin.Resource(tasks).Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{})
						require.NoError(t, err, "%s trigger %s: the API server must accept the Task", file, name)
						assert.NotEmpty(t, got.GetAnnotations()["kubeopencode.io/webhooktrigger-rule"])
						fired++
						created++
					}
				}
				assert.Greater(t, fired, 0, "%s: trigger %s fired on none of the recorded deliveries", file, name)
			}
		}
	}
	t.Logf("created %d Tasks from the migration goldens", created)
}
