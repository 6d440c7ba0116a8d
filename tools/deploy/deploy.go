// Package deploy puts KubeOpenCode on a local cluster the way a user would,
// from images built on this machine: it serves an in-process OCI registry,
// builds and pushes the images with tools/imagebuilder, installs the CRDs,
// applies manifests/rbac and manifests/controller rendered with
// tools/render, and waits for the controller's Deployment to roll out.
// tools/quickstart and the real-node end-to-end suite share it.
package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/tools/imagebuilder"
	"github.com/kubeopencode/kubeopencode/tools/images"
	"github.com/kubeopencode/kubeopencode/tools/render"
)

// Where manifests/controller puts the controller.
const (
	ControllerNamespace  = "kubeopencode-system"
	ControllerDeployment = "kubeopencode-controller"
)

// EchoAgentImage stands in for a real agent on a real node: it prints what
// it was given. It is built like the product images (same base, user
// 65532, one static binary).
var EchoAgentImage = images.Image{
	Name:        "echo-agent",
	MainPackage: images.Module + "/e2e/echoagent",
	Description: "KubeOpenCode: an agent that prints what it was given, for trying and testing the product",
}

// Registry is an OCI registry served by this process.
type Registry struct {
	// Host is host:port, for image references.
	Host string
	srv  *http.Server
}

// Close stops serving.
func (r *Registry) Close() { _ = r.srv.Close() }

// ServeRegistry serves an OCI registry on 127.0.0.1, which a node's
// containerd pulls from over plain HTTP.
func ServeRegistry() (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Registry{Host: ln.Addr().String(), srv: srv}, nil
}

// BuildAndPush builds imgs from the module at root for one platform and
// pushes them under prefix (e.g. "127.0.0.1:5000/kubeopencode"). It returns
// each image's reference pinned by digest, by image name, and writes each
// reference to progress.
func BuildAndPush(ctx context.Context, root, prefix string, platform images.Platform, imgs []images.Image, progress io.Writer) (map[string]string, error) {
	b := &imagebuilder.Builder{
		ModuleDir: root,
		Version:   imagebuilder.GitVersion(ctx, root),
		Revision:  imagebuilder.GitRevision(ctx, root),
		Platforms: []images.Platform{platform},
	}
	var err error
	if b.Epoch, err = imagebuilder.SourceDateEpoch(ctx, root); err != nil {
		return nil, err
	}
	zip, err := b.ZoneInfoZip(ctx)
	if err != nil {
		return nil, err
	}
	b.Base = &imagebuilder.BuiltBase{Epoch: b.Epoch, ZoneInfoZip: zip}
	refs := map[string]string{}
	for _, img := range imgs {
		built, err := b.Build(ctx, img)
		if err != nil {
			return nil, err
		}
		ref, err := imagebuilder.Push(ctx, img.Repository(prefix), built, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("pushing image %s to %s: %w", img.Name, prefix, err)
		}
		refs[img.Name] = ref
		fmt.Fprintf(progress, "    %s\n", ref)
	}
	return refs, nil
}

// Renderer renders manifests for the images BuildAndPush pushed under
// prefix and returned as refs.
func Renderer(prefix string, refs map[string]string) render.Renderer {
	digests := map[string]string{}
	for name, ref := range refs {
		_, d, _ := strings.Cut(ref, "@")
		digests[name] = d
	}
	return render.Renderer{Repository: prefix, Digests: digests}
}

// InstallCRDs creates the CustomResourceDefinitions in dir (one per file)
// and waits until each is established.
func InstallCRDs(ctx context.Context, c client.Client, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no CRDs in %s: run it from the kubeopencode repository", dir)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		objs, err := decode(f, data)
		if err != nil {
			return err
		}
		for _, u := range objs {
			if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("installing CRD %s from %s: %w", u.GetName(), f, err)
			}
			if err := Poll(ctx, time.Minute, func() (bool, error) {
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
				if err := c.Get(ctx, types.NamespacedName{Name: u.GetName()}, got); err != nil {
					return false, err
				}
				conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
				for _, cond := range conds {
					m, _ := cond.(map[string]any)
					if m["type"] == "Established" && m["status"] == "True" {
						return true, nil
					}
				}
				return false, nil
			}); err != nil {
				return fmt.Errorf("CRD %s not established: %w", u.GetName(), err)
			}
		}
	}
	return nil
}

// decode splits a YAML or JSON stream into objects, skipping empty ones.
func decode(path string, data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// ControllerObjects are manifests/rbac and manifests/controller of the
// module at root (Namespace, ServiceAccount, ClusterRole, bindings,
// Deployment), rendered with r, Namespaces first.
func ControllerObjects(root string, r render.Renderer) ([]*unstructured.Unstructured, error) {
	files, err := render.Collect([]string{
		filepath.Join(root, "manifests", "rbac"),
		filepath.Join(root, "manifests", "controller"),
	})
	if err != nil {
		return nil, err
	}
	if files, err = r.RenderFiles(files); err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		more, err := decode(f.Path, f.Content)
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	// Namespaces before what lives in them.
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].GetKind() == "Namespace" && objs[j].GetKind() != "Namespace" })
	return objs, nil
}

// ApplyManifests creates objs in order, leaving alone those that exist, and
// writes each one's kind and name to progress.
func ApplyManifests(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, progress io.Writer) error {
	for _, u := range objs {
		if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		fmt.Fprintf(progress, "    %s %s\n", u.GetKind(), u.GetName())
	}
	return nil
}

// WaitForRollout waits until every replica of Deployment ns/name runs its
// current template and is available.
func WaitForRollout(ctx context.Context, c client.Client, ns, name string, timeout time.Duration) error {
	err := Poll(ctx, timeout, func() (bool, error) {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, d); err != nil {
			return false, err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.AvailableReplicas == want && d.Status.Replicas == want, nil
	})
	if err != nil {
		return fmt.Errorf("Deployment %s/%s did not roll out: %w", ns, name, err)
	}
	return nil
}

// DeployController installs what a user installs besides the CRDs: the
// generated ClusterRole and manifests/controller rendered with r, so the
// controller runs from the image just built and passes the init images'
// digests on. It returns once the Deployment is rolled out.
func DeployController(ctx context.Context, c client.Client, root string, r render.Renderer, progress io.Writer) error {
	objs, err := ControllerObjects(root, r)
	if err != nil {
		return err
	}
	if err := ApplyManifests(ctx, c, objs, progress); err != nil {
		return err
	}
	return WaitForRollout(ctx, c, ControllerNamespace, ControllerDeployment, 3*time.Minute)
}

// LogControllerPods writes the controller pods' state and last log lines to
// w, for a failed deployment or test.
func LogControllerPods(ctx context.Context, cs kubernetes.Interface, w io.Writer) {
	pods, err := cs.CoreV1().Pods(ControllerNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + ControllerDeployment})
	if err != nil {
		fmt.Fprintln(w, "listing controller pods:", err)
		return
	}
	for _, p := range pods.Items {
		fmt.Fprintf(w, "controller pod %s: phase %s\n", p.Name, p.Status.Phase)
		for _, s := range p.Status.ContainerStatuses {
			fmt.Fprintf(w, "  container %s ready=%v restarts=%d state=%+v\n", s.Name, s.Ready, s.RestartCount, s.State)
		}
		tail := int64(40)
		out, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		if err != nil {
			fmt.Fprintln(w, "  logs:", err)
			continue
		}
		fmt.Fprintf(w, "  last log lines:\n%s\n", out)
	}
}

// Poll calls cond every 200ms until it holds or timeout passes; the last
// error cond returned is part of the timeout's error. (wait.Poll* of
// apimachinery stops at cond's first error, but a Deployment or CRD not
// found yet is worth waiting for.)
func Poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("timed out after %s: %w", timeout, err)
			}
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// BuildControllerBinary compiles operator/cmd/controller from the module at
// root into out, as a release build does (the Go build cache makes every
// build after the first quick). It is for running the controller as a host
// process where nodes cannot run its image.
func BuildControllerBinary(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./operator/cmd/controller")
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the controller: %v\n%s", err, strings.TrimSpace(buf.String()))
	}
	return nil
}
