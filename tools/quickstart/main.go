// Command quickstart runs KubeOpenCode end to end on this machine, with
// nothing but Go: it builds the three images with the Go-native image
// builder and serves them from an in-process registry, starts a local
// Kubernetes cluster built from source (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok nodes), installs the
// CRDs, runs the controller with the digests of the images it just built,
// applies the sample Agent and a Task, and shows the Task complete.
//
//	go run ./tools/quickstart          # run the sample Task, then clean up
//	go run ./tools/quickstart --keep   # leave the cluster and controller running
//
// kwok nodes simulate pods, so the agent container does not really run
// here: the Task's Job is created, scheduled and completed by the real
// Kubernetes control plane. docs/local-cluster.md says more.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
	"github.com/kubeopencode/kubeopencode/tools/imagebuilder"
	"github.com/kubeopencode/kubeopencode/tools/images"
	"github.com/kubeopencode/kubeopencode/tools/render"
)

func main() {
	keep := flag.Bool("keep", false, "leave the cluster and the controller running until Ctrl-C")
	dir := flag.String("dir", "", "working directory for the cluster, images and logs (default: a new temporary directory)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dir, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context, dir string, keep bool) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kubeopencode-quickstart-"); err != nil {
			return err
		}
	}

	say("Serving an image registry on 127.0.0.1 (in this process)")
	regHost, err := serveRegistry()
	if err != nil {
		return err
	}
	prefix := regHost + "/kubeopencode"

	say("Building the controller, git-init and context-init images for linux/%s", runtime.GOARCH)
	digests, err := buildImages(ctx, root, prefix)
	if err != nil {
		return err
	}
	r := render.Renderer{Repository: prefix, Digests: digests}
	deployment, err := os.ReadFile(filepath.Join(root, "manifests", "controller", "deployment.yaml"))
	if err != nil {
		return err
	}
	rendered, err := r.Render("manifests/controller/deployment.yaml", deployment)
	if err != nil {
		return err
	}
	args := controllerArgs(rendered)
	for _, a := range args {
		fmt.Println("    " + a)
	}

	say("Starting a local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) in %s", dir)
	cl, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Nodes: 1, Progress: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		say("Stopping the cluster")
		_ = cl.Stop()
	}()
	sch := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(sch))
	utilruntime.Must(v1alpha1.AddToScheme(sch))
	c, err := client.New(cl.RESTConfig(), client.Options{Scheme: sch})
	if err != nil {
		return err
	}

	say("Installing the CRDs")
	if err := installCRDs(ctx, c, filepath.Join(root, "manifests", "crd")); err != nil {
		return err
	}

	say("Starting the controller (the binary of the controller image; kwok nodes cannot run containers)")
	ctrlProc, err := startController(ctx, root, dir, cl.Kubeconfig, args)
	if err != nil {
		return err
	}
	defer func() {
		_ = ctrlProc.Process.Signal(syscall.SIGTERM)
		_ = ctrlProc.Wait()
	}()

	say("Applying the sample Agent and a Task")
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kubeopencode-agent", Namespace: "default"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := applyFile(ctx, c, filepath.Join(root, "manifests", "samples", "agent.yaml"), "default"); err != nil {
		return err
	}
	task, err := createSampleTask(ctx, c, filepath.Join(root, "manifests", "samples", "task.yaml"))
	if err != nil {
		return err
	}
	say("Task default/%s created; waiting for it to finish", task)
	final, err := waitForTask(ctx, c, task)
	if err != nil {
		fmt.Printf("    controller log: %s\n", filepath.Join(dir, "controller.log"))
		return err
	}
	printTask(final)
	if final.Status.Phase != v1alpha1.TaskPhaseCompleted {
		return fmt.Errorf("Task %s ended %s", task, final.Status.Phase)
	}
	say("Task %s Completed: its Job ran init images pinned by digest, built a minute ago", task)

	if keep {
		say("The cluster keeps running. In another shell:\n    export KUBECONFIG=%s\n    kubectl get tasks,agents,jobs\nPress Ctrl-C to stop.", cl.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run this from inside the kubeopencode repository")
	}
	return filepath.Dir(mod), nil
}

func serveRegistry() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), nil
}

func buildImages(ctx context.Context, root, prefix string) (map[string]string, error) {
	b := &imagebuilder.Builder{
		ModuleDir: root,
		Version:   imagebuilder.GitVersion(ctx, root),
		Revision:  imagebuilder.GitRevision(ctx, root),
		Platforms: []images.Platform{{OS: "linux", Arch: runtime.GOARCH}},
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
	digests := map[string]string{}
	for _, img := range images.All {
		built, err := b.Build(ctx, img)
		if err != nil {
			return nil, err
		}
		ref, err := imagebuilder.Push(ctx, img.Repository(prefix), built, nil, nil)
		if err != nil {
			return nil, err
		}
		digests[img.Name] = built.Digest.String()
		fmt.Printf("    %s\n", ref)
	}
	return digests, nil
}

var argRE = regexp.MustCompile(`(?m)^\s*- (--(?:git-init|context-init)-image=\S+)$`)

// controllerArgs takes the init-image flags from the rendered Deployment, so
// the controller runs with exactly what a user would deploy.
func controllerArgs(deployment []byte) []string {
	var args []string
	for _, m := range argRE.FindAllSubmatch(deployment, -1) {
		args = append(args, string(m[1]))
	}
	return args
}

func installCRDs(ctx context.Context, c client.Client, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return err
		}
		if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("installing %s: %w", f, err)
		}
		if err := waitUntil(ctx, time.Minute, func() (bool, error) {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
			if err := c.Get(ctx, types.NamespacedName{Name: u.GetName()}, got); err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, cond := range conds {
				m := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			return fmt.Errorf("CRD %s not established: %w", u.GetName(), err)
		}
	}
	return nil
}

func startController(ctx context.Context, root, dir, kubeconfig string, imageArgs []string) (*exec.Cmd, error) {
	bin := filepath.Join(dir, "controller")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./operator/cmd/controller")
	build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("building the controller: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		return nil, err
	}
	args := append([]string{"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0"}, imageArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	fmt.Printf("    pid %d, log %s\n", cmd.Process.Pid, logFile.Name())
	return cmd, nil
}

func applyFile(ctx context.Context, c client.Client, path, namespace string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	u.SetNamespace(namespace)
	if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("applying %s: %w", path, err)
	}
	return nil
}

func createSampleTask(ctx context.Context, c client.Client, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	task := &v1alpha1.Task{}
	if err := yaml.Unmarshal(data, task); err != nil {
		return "", err
	}
	task.Namespace = "default"
	if err := c.Create(ctx, task); err != nil {
		return "", err
	}
	return task.Name, nil
}

func waitForTask(ctx context.Context, c client.Client, name string) (*v1alpha1.Task, error) {
	var task *v1alpha1.Task
	last := v1alpha1.TaskPhase("-")
	err := waitUntil(ctx, 3*time.Minute, func() (bool, error) {
		task = &v1alpha1.Task{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, task); err != nil {
			return false, err
		}
		if task.Status.Phase != last && task.Status.Phase != "" {
			last = task.Status.Phase
			msg := ""
			for _, cond := range task.Status.Conditions {
				if cond.Status != metav1.ConditionTrue || cond.Type == v1alpha1.TaskConditionSucceeded {
					msg = cond.Reason + ": " + cond.Message
				}
			}
			fmt.Printf("    phase %-9s %s\n", last, msg)
		}
		return task.Status.Phase.IsTerminal(), nil
	})
	return task, err
}

func printTask(t *v1alpha1.Task) {
	fmt.Printf("\n    %-16s %-10s %-8s %-16s\n", "NAME", "PHASE", "AGENT", "JOB")
	fmt.Printf("    %-16s %-10s %-8s %-16s\n", t.Name, t.Status.Phase, t.Status.Agent, t.Status.JobName)
	if s := meta.FindStatusCondition(t.Status.Conditions, v1alpha1.TaskConditionSucceeded); s != nil {
		fmt.Printf("    Succeeded=%s %s: %s\n", s.Status, s.Reason, s.Message)
	}
	if t.Status.Images != nil {
		fmt.Printf("    git-init:     %s\n    context-init: %s\n\n", t.Status.Images.GitInit, t.Status.Images.ContextInit)
	}
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
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
