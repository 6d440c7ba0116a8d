// Command quickstart runs KubeOpenCode end to end on this machine, with
// nothing but Go: it builds the images with the Go-native image builder and
// serves them from an in-process registry, starts a local Kubernetes cluster
// built from source (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and a node), runs the controller with the digests of the
// images it just built, applies the sample Agent and a Task, and shows the
// Task complete.
//
//	go run ./tools/quickstart              # real node when the host can run one, else kwok
//	go run ./tools/quickstart --real-node  # real node or fail, naming what the host lacks
//	go run ./tools/quickstart --kwok       # simulated pods, on any host
//	go run ./tools/quickstart --keep       # leave the cluster running until Ctrl-C
//
// On a real node (root, containerd, runc and the CNI plugins, which it
// installs with apt-get when run as root on Debian) every container really
// runs: the controller from its image, deployed with the rendered manifests;
// git-init and context-init; and the agent: OpenCode, from the
// agent-opencode image, run on the sample Task. Its model is the scripted
// model of internal/modelserver, served on this host, unless a real one is
// given:
//
//	go run ./tools/quickstart --model-endpoint https://api.example.com/v1 --model my-model   # OpenAI-compatible
//	go run ./tools/quickstart --model anthropic/claude-sonnet-4-5                             # a provider OpenCode knows
//
// with the API key in $KUBEOPENCODE_MODEL_API_KEY. The sample Agent's egress
// isolation is on: the node enforces NetworkPolicy (kube-router, which
// needs iptables and ipset), the Agent's allow-list names the model's host
// and port, and the quickstart fails unless the Task's pod proved the policy
// enforced (--egress-isolation=false runs the agent unfenced).
//
// kwok nodes only simulate pods: the controller then runs as a process on
// this host, and the Task's Job is created, scheduled and completed by the
// real control plane without any container running (and without egress
// isolation, which nothing there could enforce). docs/local-cluster.md says
// more.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/internal/modelserver"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
	"github.com/kubeopencode/kubeopencode/tools/images"
	"github.com/kubeopencode/kubeopencode/tools/render"
)

func main() {
	var o options
	flag.BoolVar(&o.keep, "keep", false, "leave the cluster and the controller running until Ctrl-C")
	flag.StringVar(&o.dir, "dir", "", "working directory for the cluster, images and logs (default: a new temporary directory)")
	flag.BoolVar(&o.kwok, "kwok", false, "simulate pods on kwok nodes even when this host can run a real node")
	flag.BoolVar(&o.realNode, "real-node", false, "require a real node (kubelet with containerd); fail when the host cannot run one")
	flag.StringVar(&o.modelEndpoint, "model-endpoint", "", "base URL of an OpenAI-compatible model API to use instead of the scripted model (needs --model)")
	flag.BoolVar(&o.egress, "egress-isolation", true, "on a real node, enforce the sample Agent's network.egress (a NetworkPolicy, kube-router on the node) so that the agent can reach its model and nothing else; false runs it unfenced")
	flag.StringVar(&o.model, "model", "", "the model: with --model-endpoint its name there, else provider/model as OpenCode knows it (e.g. anthropic/claude-sonnet-4-5)")
	flag.Parse()
	// controller-runtime's client logs through a logger that must be set;
	// the quickstart reports errors itself.
	ctrllog.SetLogger(logr.Discard())
	if o.modelEndpoint != "" && o.model == "" {
		fmt.Fprintln(os.Stderr, "quickstart: --model-endpoint needs --model, the model's name at that endpoint")
		os.Exit(2)
	}
	if o.kwok && o.realNode {
		fmt.Fprintln(os.Stderr, "quickstart: --kwok and --real-node exclude each other; pass at most one")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
	say("Done in %s", time.Since(began).Round(100*time.Millisecond))
}

type options struct {
	dir            string
	keep           bool
	kwok, realNode bool
	modelEndpoint  string
	model          string
	egress         bool
}

// apiKeyEnv holds the API key for --model-endpoint or --model.
const apiKeyEnv = "KUBEOPENCODE_MODEL_API_KEY"

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

// useRealNode picks the node kind and says which, and why.
func useRealNode(o options) (bool, error) {
	var features []cluster.RealNodeFeature
	if o.egress {
		features = append(features, cluster.WithNetworkPolicy)
	}
	ok, missing := cluster.RealNodeSupported(features...)
	if !ok && !o.kwok && os.Geteuid() == 0 {
		if pkgs := cluster.RealNodePackages(features...); len(pkgs) > 0 {
			if _, err := exec.LookPath("apt-get"); err == nil {
				say("Installing what a real node needs: apt-get install -y %s", strings.Join(pkgs, " "))
				if err := aptInstall(pkgs); err != nil {
					return false, err
				}
				ok, missing = cluster.RealNodeSupported(features...)
			}
		}
	}
	switch {
	case o.kwok:
		say("Mode: kwok nodes (--kwok): pods are simulated; the agent does not really run")
		return false, nil
	case ok:
		say("Mode: real node: a kubelet with this host's containerd and runc runs every container (--kwok simulates pods instead)")
		return true, nil
	case o.realNode:
		return false, fmt.Errorf("--real-node: this host cannot run a real node; it needs %s", strings.Join(missing, "; "))
	default:
		say("Mode: kwok nodes: pods are simulated, because a real node needs what this host lacks:\n    - %s\n    (--real-node makes this an error)",
			strings.Join(missing, "\n    - "))
		return false, nil
	}
}

// aptInstall installs Debian packages, as tools/test.sh does.
func aptInstall(pkgs []string) error {
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq"}, pkgs...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func run(ctx context.Context, o options) error {
	onRealNode, err := useRealNode(o)
	if err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kubeopencode-quickstart-"); err != nil {
			return err
		}
	}

	say("Serving an image registry on 127.0.0.1 (in this process)")
	reg, err := deploy.ServeRegistry()
	if err != nil {
		return err
	}
	defer reg.Close()
	prefix := reg.Host + "/kubeopencode"

	imgs := images.All
	if onRealNode {
		imgs = append(append([]images.Image(nil), images.All...), images.AgentOpenCode)
	}
	var names []string
	for _, img := range imgs {
		names = append(names, img.Name)
	}
	say("Building the %s images for linux/%s", strings.Join(names, ", "), runtime.GOARCH)
	refs, err := deploy.BuildAndPush(ctx, root, prefix, images.Platform{OS: "linux", Arch: runtime.GOARCH}, imgs, os.Stdout)
	if err != nil {
		return err
	}
	r := deploy.Renderer(prefix, refs)

	if onRealNode {
		say("Starting a local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a kubelet with containerd) in %s", dir)
	} else {
		say("Starting a local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) in %s", dir)
	}
	copts := cluster.Options{Dir: filepath.Join(dir, "cluster"), Nodes: 1, Progress: os.Stdout}
	if onRealNode {
		copts.RealNode, copts.NetworkPolicy, copts.Nodes = true, o.egress, 0
	}
	cl, err := cluster.Start(ctx, copts)
	if err != nil {
		return err
	}
	defer func() {
		say("Stopping the cluster")
		if err := cl.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "quickstart: stopping the cluster:", err)
		}
	}()
	sch := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(sch))
	utilruntime.Must(v1alpha1.AddToScheme(sch))
	c, err := client.New(cl.RESTConfig(), client.Options{Scheme: sch})
	if err != nil {
		return err
	}

	say("Installing the CRDs")
	if err := deploy.InstallCRDs(ctx, c, filepath.Join(root, "manifests", "crd")); err != nil {
		return err
	}

	var task *v1alpha1.Task
	if onRealNode {
		if task, err = runOnRealNode(ctx, c, cl, root, r, refs, o); err != nil {
			return err
		}
	} else {
		var stopController func()
		task, stopController, err = runOnKwok(ctx, c, cl, root, dir, r)
		if stopController != nil {
			defer stopController()
		}
		if err != nil {
			return err
		}
	}
	if o.keep {
		say("The cluster keeps running. In another shell:\n    export KUBECONFIG=%s\n    kubectl get -n %s tasks,agents,jobs,pods\nPress Ctrl-C to stop.", cl.Kubeconfig, task.Namespace)
		<-ctx.Done()
	}
	return nil
}

// runOnKwok runs the controller as a process on this host (kwok nodes cannot
// run its container) and the sample Task in namespace default.
func runOnKwok(ctx context.Context, c client.Client, cl *cluster.Cluster, root, dir string, r render.Renderer) (*v1alpha1.Task, func(), error) {
	deployment, err := os.ReadFile(filepath.Join(root, "manifests", "controller", "deployment.yaml"))
	if err != nil {
		return nil, nil, err
	}
	rendered, err := r.Render("manifests/controller/deployment.yaml", deployment)
	if err != nil {
		return nil, nil, err
	}
	args := controllerArgs(rendered)
	for _, a := range args {
		fmt.Println("    " + a)
	}
	say("Starting the controller (the binary of the controller image; kwok nodes cannot run containers)")
	ctrlProc, err := startController(ctx, root, dir, cl.Kubeconfig, args)
	if err != nil {
		return nil, nil, err
	}
	stopController := func() {
		_ = ctrlProc.Process.Signal(syscall.SIGTERM)
		_ = ctrlProc.Wait()
	}

	say("Applying the sample Agent and a Task")
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kubeopencode-agent", Namespace: "default"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, stopController, err
	}
	agent, err := deploy.ReadSampleAgent(root, "default")
	if err != nil {
		return nil, stopController, err
	}
	// kwok runs no container, so nothing could enforce or check the
	// sample's egress isolation: the Agent goes without it.
	agent.Spec.Network = nil
	fmt.Println("    without network.egress: kwok nodes run no containers, so no policy could be enforced")
	if err := c.Create(ctx, agent); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, stopController, fmt.Errorf("creating Agent %s/%s: %w", agent.Namespace, agent.Name, err)
	}
	final, err := runSampleTask(ctx, c, root, "default")
	if err != nil {
		fmt.Printf("    controller log: %s\n", filepath.Join(dir, "controller.log"))
		return nil, stopController, err
	}
	say("Task %s Completed: its Job ran init images pinned by digest, built a minute ago", final.Name)
	return final, stopController, nil
}

// quickstartNamespace holds the sample Agent and Task on the real node.
const quickstartNamespace = "quickstart"

// runOnRealNode deploys the controller from its image with the rendered
// manifests, and runs the sample Task with the OpenCode agent in a namespace
// that enforces the restricted Pod Security Standard.
func runOnRealNode(ctx context.Context, c client.Client, cl *cluster.Cluster, root string, r render.Renderer, refs map[string]string, o options) (*v1alpha1.Task, error) {
	say("Deploying the controller from its image (manifests/rbac and manifests/controller, rendered)")
	if err := deploy.DeployController(ctx, c, root, r, os.Stdout); err != nil {
		logControllerPods(ctx, cl)
		return nil, err
	}
	fmt.Printf("    %s/%s rolled out; it reaches the API server at the kubernetes Service address %s\n", deploy.ControllerNamespace, deploy.ControllerDeployment, cl.APIServiceAddress)

	model, apiKey, stopModel, err := chooseModel(o)
	if err != nil {
		return nil, err
	}
	defer stopModel()

	say("Applying the sample Agent (OpenCode) and a Task in namespace %s (Pod Security: restricted)", quickstartNamespace)
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: quickstartNamespace, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kubeopencode-agent", Namespace: quickstartNamespace}},
		// The sample Agent's credential: the model's API key.
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "llm-credentials", Namespace: quickstartNamespace},
			StringData: map[string]string{"api-key": apiKey},
		},
	} {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	agent, err := deploy.SampleAgent(root, quickstartNamespace, refs[images.AgentOpenCode.Name], model)
	if err != nil {
		return nil, err
	}
	if !o.egress {
		agent.Spec.Network = nil
	}
	fmt.Printf("    agentImage: %s\n    command: %s\n", agent.Spec.AgentImage, strings.Join(agent.Spec.Command, " "))
	for _, e := range agent.Spec.Env {
		fmt.Printf("    env %s=%s\n", e.Name, e.Value)
	}
	if agent.Spec.Network != nil {
		for _, a := range agent.Spec.Network.Egress.Allow {
			fmt.Printf("    network.egress.allow %s%s ports %v\n", a.Host, a.CIDR, a.Ports)
		}
	} else {
		fmt.Println("    no network.egress (--egress-isolation=false): the agent may connect anywhere")
	}
	if err := c.Create(ctx, agent); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating Agent %s/%s: %w", agent.Namespace, agent.Name, err)
	}
	final, err := runSampleTask(ctx, c, root, quickstartNamespace)
	if err != nil {
		if final != nil {
			printAgentOutput(ctx, c, cl, final)
		}
		logControllerPods(ctx, cl)
		return nil, err
	}
	printAgentOutput(ctx, c, cl, final)
	if err := printEgress(final, o.egress); err != nil {
		return final, err
	}
	if err := printResults(ctx, c, final); err != nil {
		return final, err
	}
	say("Task %s/%s Completed: its init containers and OpenCode ran in containers on node %s, from images pinned by digest",
		final.Namespace, final.Name, cluster.RealNodeName)
	return final, nil
}

// printEgress shows what the Task's egress isolation allowed and what its
// pod found refused; with isolation on, a Task that did not prove it
// enforced is an error, not a quiet success.
func printEgress(t *v1alpha1.Task, on bool) error {
	if !on {
		return nil
	}
	c := meta.FindStatusCondition(t.Status.Conditions, v1alpha1.TaskConditionEgressEnforced)
	if t.Status.Egress == nil || c == nil {
		return fmt.Errorf("Task %s/%s records no egress isolation", t.Namespace, t.Name)
	}
	say("Egress isolation (kubectl get task -n %s %s -o jsonpath='{.status.egress}'): NetworkPolicy %s", t.Namespace, t.Name, t.Status.Egress.NetworkPolicy)
	for _, a := range t.Status.Egress.Allowed {
		fmt.Println("    allowed: " + a)
	}
	for _, r := range t.Status.Egress.Refused {
		fmt.Println("    refused: " + r)
	}
	fmt.Printf("    EgressEnforced=%s %s: %s\n", c.Status, c.Reason, c.Message)
	if c.Status != metav1.ConditionTrue {
		return fmt.Errorf("Task %s/%s: its egress isolation was not proven enforced (%s)", t.Namespace, t.Name, c.Reason)
	}
	return nil
}

// printResults shows the Task's results as `kubectl get task -o yaml` shows
// them, deletes the Task's pod and reads the transcript, which the pod's
// deletion does not take with it.
func printResults(ctx context.Context, c client.Client, t *v1alpha1.Task) error {
	say("What the Task kept (kubectl get task -n %s %s -o yaml, status.results and status.transcript)", t.Namespace, t.Name)
	if t.Status.Results == nil || t.Status.Transcript == nil {
		return fmt.Errorf("Task %s/%s ended without results or transcript", t.Namespace, t.Name)
	}
	kept, err := yaml.Marshal(map[string]any{"results": t.Status.Results, "transcript": t.Status.Transcript})
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(string(kept), "\n"), "\n") {
		fmt.Println("    " + line)
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(t.Namespace), client.MatchingLabels{"kubeopencode.io/task-uid": string(t.UID)}); err != nil {
		return err
	}
	for i := range pods.Items {
		if err := c.Delete(ctx, &pods.Items[i]); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	if err := deploy.Poll(ctx, 2*time.Minute, func() (bool, error) {
		left := &corev1.PodList{}
		err := c.List(ctx, left, client.InNamespace(t.Namespace), client.MatchingLabels{"kubeopencode.io/task-uid": string(t.UID)})
		return err == nil && len(left.Items) == 0, err
	}); err != nil {
		return fmt.Errorf("deleting the pod of Task %s/%s: %w", t.Namespace, t.Name, err)
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: t.Status.Transcript.ConfigMap}, cm); err != nil {
		return fmt.Errorf("reading the transcript of Task %s/%s: %w", t.Namespace, t.Name, err)
	}
	text := cm.Data["transcript"]
	say("The pod is deleted; the transcript (%d bytes) is still there:", len(text))
	fmt.Printf("    kubectl get configmap -n %s %s -o jsonpath='{.data.transcript}'\n", t.Namespace, t.Status.Transcript.ConfigMap)
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	const show = 8
	for i, line := range lines {
		if i == show && len(lines) > 2*show {
			fmt.Printf("    … %d lines …\n", len(lines)-2*show)
		}
		if i < show || i >= len(lines)-show {
			fmt.Println("    " + line)
		}
	}
	return nil
}

// chooseModel returns the model for the Agent and its API key: the scripted
// model, served on the pod bridge for as long as the quickstart runs, or
// the one the flags name.
func chooseModel(o options) (deploy.SampleModel, string, func(), error) {
	key := os.Getenv(apiKeyEnv)
	switch {
	case o.modelEndpoint != "":
		if key == "" {
			return deploy.SampleModel{}, "", nil, fmt.Errorf("--model-endpoint: put the API key in $%s", apiKeyEnv)
		}
		say("Model: %s at %s (OpenAI-compatible), key from $%s", o.model, o.modelEndpoint, apiKeyEnv)
		m, err := deploy.OpenAICompatible("endpoint", o.modelEndpoint, o.model)
		return m, key, func() {}, err
	case o.model != "":
		if key == "" {
			return deploy.SampleModel{}, "", nil, fmt.Errorf("--model %s: put the provider's API key in $%s", o.model, apiKeyEnv)
		}
		say("Model: %s, key from $%s", o.model, apiKeyEnv)
		if !o.egress {
			return deploy.SampleModel{Name: o.model}, key, func() {}, nil
		}
		m, err := deploy.ProviderModel(o.model)
		if err != nil {
			err = fmt.Errorf("--model: %w (--model-endpoint, or --egress-isolation=false)", err)
		}
		return m, key, func() {}, err
	}
	host, err := cluster.PodBridgeAddress()
	if err != nil {
		return deploy.SampleModel{}, "", nil, err
	}
	srv, err := modelserver.Start(host + ":0")
	if err != nil {
		return deploy.SampleModel{}, "", nil, err
	}
	base := srv.Handle("default", deploy.SampleScript)
	say("Model: the scripted model at %s (no provider needed; --model-endpoint or --model use a real one)", base)
	m, err := deploy.OpenAICompatible("scripted", base, "quickstart")
	return m, "scripted-model-key", srv.Close, err
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

func startController(ctx context.Context, root, dir, kubeconfig string, imageArgs []string) (*exec.Cmd, error) {
	bin := filepath.Join(dir, "controller")
	if err := deploy.BuildControllerBinary(ctx, root, bin); err != nil {
		return nil, err
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

// runSampleTask creates the sample Task in ns and waits for it to end; it
// returns the Task as it ended, with an error unless it Completed.
func runSampleTask(ctx context.Context, c client.Client, root, ns string) (*v1alpha1.Task, error) {
	task, err := deploy.SampleTask(root, ns)
	if err != nil {
		return nil, err
	}
	if err := c.Create(ctx, task); err != nil {
		return nil, fmt.Errorf("creating the Task of %s in namespace %s: %w", deploy.SampleTaskFile, ns, err)
	}
	say("Task %s/%s created; waiting for it to finish", ns, task.Name)
	final, err := waitForTask(ctx, c, ns, task.Name)
	if err != nil {
		return final, fmt.Errorf("Task %s/%s: %w", ns, task.Name, err)
	}
	printTask(final)
	if final.Status.Phase != v1alpha1.TaskPhaseCompleted {
		return final, fmt.Errorf("Task %s/%s ended %s", ns, task.Name, final.Status.Phase)
	}
	return final, nil
}

func waitForTask(ctx context.Context, c client.Client, ns, name string) (*v1alpha1.Task, error) {
	var task *v1alpha1.Task
	last := v1alpha1.TaskPhase("-")
	err := deploy.Poll(ctx, 3*time.Minute, func() (bool, error) {
		task = &v1alpha1.Task{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, task); err != nil {
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

// printAgentOutput shows what the agent container printed, read through the
// pod logs API as `kubectl logs` would.
func printAgentOutput(ctx context.Context, c client.Client, cl *cluster.Cluster, t *v1alpha1.Task) {
	cs, err := kubernetes.NewForConfig(cl.RESTConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		return
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(t.Namespace), client.MatchingLabels{"kubeopencode.io/task-uid": string(t.UID)}); err != nil || len(pods.Items) == 0 {
		fmt.Fprintf(os.Stderr, "quickstart: no pod of Task %s/%s to show the agent's output of (%v)\n", t.Namespace, t.Name, err)
		return
	}
	pod := pods.Items[0]
	out, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "agent"}).DoRaw(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "quickstart: logs of pod %s/%s container agent: %v\n", pod.Namespace, pod.Name, err)
		return
	}
	say("What the agent printed (kubectl logs -n %s %s -c agent)", pod.Namespace, pod.Name)
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("    " + line)
	}
}

// logControllerPods prints the controller pod's state and last log lines,
// for a failed deployment or Task.
func logControllerPods(ctx context.Context, cl *cluster.Cluster) {
	cs, err := kubernetes.NewForConfig(cl.RESTConfig())
	if err != nil {
		return
	}
	deploy.LogControllerPods(ctx, cs, os.Stderr)
}
