// Package realnode tests KubeOpenCode end to end on a real node: a kubelet
// with containerd and runc on this machine (tools/cluster, Options.RealNode)
// runs every container for real. The controller runs from its own image,
// deployed with the shipped manifests; git-init and context-init run from
// their images, pinned by digest; the agent is a small program
// (e2e/echoagent) that prints what it was given, so each test asserts on
// what a real agent would see: its files, their modes and owners, its
// environment, and the Task's status.
//
// TestMain sets up once per package: an image registry on 127.0.0.1, the
// four images, the cluster (whose real node gives pods the API server at the
// kubernetes Service address, and enforces NetworkPolicy with kube-router's
// network policy controller), the controller, and Git servers for the pods
// to clone from.
// docs/e2e.md describes the suite and what the host needs.
package realnode_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/internal/modelserver"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
	"github.com/kubeopencode/kubeopencode/tools/images"
)

// env is what TestMain set up for the tests.
var env struct {
	// skip, when set, says what the host lacks; every test skips with it.
	skip string

	cluster *cluster.Cluster
	k8s     client.WithWatch
	cs      kubernetes.Interface
	// echoImage is the echo agent's image, pinned by digest.
	echoImage string
	images    map[string]string // image name -> pinned reference
	git       *gitServers
	// opencodeImage is the agent-opencode image, pinned by digest.
	opencodeImage string
	// model is the scripted model, served where pods reach it.
	model *modelserver.Server
}

// Where the echo agent's binary is in its image.
const echoBinary = "/usr/local/bin/echo-agent"

func TestMain(m *testing.M) {
	flag.Parse()
	if ok, missing := cluster.RealNodeSupported(cluster.WithNetworkPolicy); !ok {
		env.skip = "the real-node suite needs " + strings.Join(missing, "; ")
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING e2e/realnode: %s ***\n\n", env.skip)
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kubeopencode-realnode-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if code == 0 {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "cluster logs kept in %s\n", dir)
		}
	}()
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "e2e/realnode set-up: %s: %v\n", what, err)
		return 1
	}
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	// A host that runs a real node but lacks git is set up wrongly: fail
	// rather than skip.
	if _, err := exec.LookPath("git"); err != nil {
		return fail("the suite needs git", errors.New("apt-get install -y git"))
	}

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return fail("finding the module root", err)
	}
	reg, err := deploy.ServeRegistry()
	if err != nil {
		return fail("serving the image registry", err)
	}
	defer reg.Close()
	step("registry at %s", reg.Host)
	prefix := reg.Host + "/kubeopencode"

	// The images build while the cluster starts; both take a while.
	type buildResult struct {
		refs map[string]string
		err  error
	}
	built := make(chan buildResult, 1)
	go func() {
		// The real node is this machine; containerd picks the amd64 image.
		refs, err := deploy.BuildAndPush(ctx, root, prefix, images.Platform{OS: "linux", Arch: "amd64"}, append(append([]images.Image(nil), images.All...), deploy.EchoAgentImage, images.AgentOpenCode), io.Discard)
		built <- buildResult{refs, err}
	}()

	c, err := cluster.Start(ctx, cluster.Options{RealNode: true, NetworkPolicy: true, Dir: filepath.Join(dir, "cluster"), Progress: os.Stderr})
	if err != nil {
		<-built
		return fail("starting the cluster", err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the cluster:", err)
		}
	}()
	env.cluster = c
	cfg := c.RESTConfig()
	cfg.QPS, cfg.Burst = 100, 200
	if env.k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme()}); err != nil {
		return fail("client", err)
	}
	if env.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return fail("client", err)
	}
	step("cluster ready")

	step("pods reach the API server at the kubernetes Service address %s", c.APIServiceAddress)

	b := <-built
	if b.err != nil {
		return fail("building the images", b.err)
	}
	env.images = b.refs
	env.echoImage = b.refs[deploy.EchoAgentImage.Name]
	env.opencodeImage = b.refs[images.AgentOpenCode.Name]
	step("images built and pushed")

	if err := deploy.InstallCRDs(ctx, env.k8s, filepath.Join(root, "manifests", "crd")); err != nil {
		return fail("installing the CRDs", err)
	}
	if err := deploy.DeployController(ctx, env.k8s, root, deploy.Renderer(prefix, b.refs), io.Discard); err != nil {
		logControllerPod(env.cs)
		return fail("deploying the controller", err)
	}
	step("controller Deployment rolled out")

	host, err := bridgeAddress()
	if err != nil {
		return fail("finding the pod bridge", err)
	}
	if err := nameHostServers(ctx, host); err != nil {
		logControllerPod(env.cs)
		return fail("naming the host's servers for the controller", err)
	}
	step("controller resolves %s and %s to %s", modelHost, gitHost, host)

	if env.git, err = startGitServers(dir); err != nil {
		return fail("starting the Git servers", err)
	}
	defer env.git.Close()
	step("Git servers at %s (HTTP) and %s (SSH)", env.git.httpURL, env.git.sshAddr)
	if env.model, err = modelserver.Start(host + ":0"); err != nil {
		return fail("starting the scripted model", err)
	}
	defer env.model.Close()
	step("scripted model at %s", env.model.URL)

	code = m.Run()
	if code != 0 {
		logControllerPod(env.cs)
	}
	step("tests done")
	return code
}

// The names egress allow-lists use for the servers this host runs for the
// pods (the scripted model, the Git servers). The controller resolves them
// as it would a public name, here from hostAliases on its Deployment.
const (
	modelHost = "model.e2e.test"
	gitHost   = "git.e2e.test"
)

// nameHostServers has the controller resolve modelHost and gitHost to ip,
// the host's address on the pod bridge, and waits for it to roll out.
func nameHostServers(ctx context.Context, ip string) error {
	d := &appsv1.Deployment{}
	if err := env.k8s.Get(ctx, types.NamespacedName{Namespace: deploy.ControllerNamespace, Name: deploy.ControllerDeployment}, d); err != nil {
		return err
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.HostAliases = []corev1.HostAlias{{IP: ip, Hostnames: []string{modelHost, gitHost}}}
	if err := env.k8s.Patch(ctx, d, patch); err != nil {
		return err
	}
	return deploy.WaitForRollout(ctx, env.k8s, deploy.ControllerNamespace, deploy.ControllerDeployment, 3*time.Minute)
}

// requireEnv skips a test on a host that cannot run a real node.
func requireEnv(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}
