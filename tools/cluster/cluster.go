package cluster

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kwokStages is the lifecycle kwok plays on fake nodes and their pods.
//
//go:embed kwok-stages.yaml
var kwokStages []byte

// Pod annotations that steer the simulated pods on fake nodes.
const (
	// AnnotationExitCode makes every container of a pod end with this exit
	// code ("1".."999"); the pod then fails. Missing or "0": it succeeds.
	AnnotationExitCode = "kwok.kubeopencode.io/exit-code"
	// AnnotationDuration is how long a pod stays Running before it ends, as
	// a Go duration ("30s"). The default is one second.
	AnnotationDuration = "kwok.kubeopencode.io/duration"
	// AnnotationFakeNode marks the nodes that kwok manages.
	AnnotationFakeNode = "kwok.x-k8s.io/node"
)

// Options configures a local cluster.
type Options struct {
	// Dir keeps the cluster's data, credentials, kubeconfig and logs. Empty:
	// a temporary directory that Stop removes.
	Dir string
	// Nodes is the number of fake nodes kwok manages; 0 means 1.
	Nodes int
	// Binaries to run; nil builds or reuses the cached ones (EnsureBinaries).
	Binaries *Binaries
	// Progress receives build and start-up progress; nil discards it.
	Progress io.Writer
	// StartTimeout bounds the start-up once the binaries exist; 0 means 3m.
	StartTimeout time.Duration
	// RealNode also runs a kubelet with containerd, registered as node
	// "localhost" (RealNodeName) and labelled kubeopencode.io/real-node=true,
	// that runs pods in real containers. It needs root and the Debian
	// packages containerd, runc and containernetworking-plugins
	// (RealNodeSupported says what is missing). With RealNode, Nodes counts
	// fake nodes besides it and 0 means none. Pods reach the API server at
	// the kubernetes Service address (APIServiceAddress), forwarded by the
	// process that called Start until Stop.
	RealNode bool
	// NetworkPolicy enforces NetworkPolicies on the real node (it needs
	// RealNode; without, Start fails, and RealNodeSupported(WithNetworkPolicy)
	// says what the host lacks): kube-router's network policy controller
	// (KubeRouterVersion, firewall only: no routing, no service proxy) runs
	// as ComponentKubeRouter and filters, with iptables and ipset (Debian's
	// iptables and ipset packages), the traffic of every pod to other pods,
	// to this host and beyond. Start returns once kube-router has written
	// its rules.
	//
	// A policy created, changed or deleted later takes effect at
	// kube-router's next sync, which follows the change (0.05-0.5 s on two
	// busy cores): poll for it. Likewise a new pod's rules follow its
	// address in the pod's status, so its first connections (about 0.15 s
	// from its start) are not yet filtered. Blocked connections are
	// rejected; the kernel's ICMP rate limit turns some rejections into
	// timeouts. kube-router lets pods reach every address of this host on
	// the NodePort range 30000-32767 whatever their policies say.
	//
	// As with kube-proxy, pods' connections to the kubernetes Service are
	// DNATed, here to APIServiceEndpoint on the pod bridge, and policies
	// judge them by that address: allow it (ipBlock <address>/32 and its
	// port) for pods that need the API server.
	//
	// Stop removes kube-router's chains and ipsets, and Start removes those
	// a crashed run left behind. Only one cluster with NetworkPolicy runs
	// on a host at a time.
	NetworkPolicy bool
}

// Component names, as used for log files (<Dir>/logs/<name>.log) and PIDs.
const (
	ComponentEtcd              = "etcd"
	ComponentAPIServer         = "kube-apiserver"
	ComponentControllerManager = "kube-controller-manager"
	ComponentScheduler         = "kube-scheduler"
	ComponentKwok              = "kwok"
)

// Cluster is a running local cluster. Its processes outlive the context given
// to Start; only Stop ends them.
type Cluster struct {
	// Dir holds data, credentials and logs.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig (group system:masters).
	Kubeconfig string
	// Server is the API server URL.
	Server string
	// NodeNames lists the fake nodes.
	NodeNames []string
	// APIServiceAddress is, with Options.RealNode, the address of the
	// kubernetes Service (10.96.0.1:443) at which pods on the real node reach
	// the API server: in-cluster clients find it in KUBERNETES_SERVICE_HOST
	// and KUBERNETES_SERVICE_PORT as on any cluster.
	APIServiceAddress string
	// APIServiceEndpoint is, with Options.NetworkPolicy, where pods'
	// connections to APIServiceAddress really go (host:port on the pod
	// bridge, as an endpoint behind a ClusterIP): the address
	// NetworkPolicies see. Empty otherwise.
	APIServiceEndpoint string

	restConfig *rest.Config
	procs      []*process // in start order
	removeDir  bool

	// Set with Options.RealNode.
	nodeDir        string
	containerdSock string
	apiService     *apiServiceForwarder
	// Set with Options.NetworkPolicy.
	netpol *netpolHost
}

// Start runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
// kwok on 127.0.0.1 and returns once the fake nodes are Ready and the
// controllers have created the default service account. On error nothing is
// left running.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	if opts.NetworkPolicy && !opts.RealNode {
		return nil, errors.New("Options.NetworkPolicy needs Options.RealNode: NetworkPolicies are enforced on the real node only")
	}
	bins := opts.Binaries
	if bins == nil {
		b, err := EnsureBinaries(ctx, progress)
		if err != nil {
			return nil, err
		}
		bins = &b
	}
	if opts.RealNode {
		var features []RealNodeFeature
		if opts.NetworkPolicy {
			features = append(features, WithNetworkPolicy)
		}
		if err := checkRealNodeHost(features...); err != nil {
			return nil, err
		}
	} else if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	for attempt := 1; ; attempt++ {
		c, err := start(ctx, opts, bins, progress)
		// Ports are picked free and bound only later by the components, so
		// a parallel test can take one in between. A fresh directory lets a
		// retry start over cleanly; a caller's directory may hold etcd data
		// that remembers the old ports.
		if err != nil && errors.Is(err, errPortTaken) && opts.Dir == "" && attempt < 3 {
			fmt.Fprintf(progress, "a port was taken during start-up; retrying: %v\n", err)
			continue
		}
		return c, err
	}
}

func start(ctx context.Context, opts Options, bins *Binaries, progress io.Writer) (_ *Cluster, err error) {
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	c := &Cluster{Dir: opts.Dir}
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "kubeopencode-cluster-")
		if err != nil {
			return nil, err
		}
		c.Dir, c.removeDir = dir, true
	}
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("starting local cluster in %s: %w", c.Dir, err)
			_ = c.Stop()
		}
	}()
	for _, d := range []string{"logs", "etcd", "pki", "kwok"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if opts.NetworkPolicy {
		// First, so that a second cluster with NetworkPolicy fails at once.
		if err := c.prepareNetworkPolicyHost(progress); err != nil {
			return nil, err
		}
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.Server = "https://127.0.0.1:" + strconv.Itoa(ports[2])

	creds, err := writeCredentials(c.Dir, c.Server)
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = creds.kubeconfigs["admin"]
	if c.restConfig, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, err
	}

	step := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	start := time.Now()

	etcd, err := c.run(ComponentEtcd, bins.Path(Etcd), nil,
		"--name=local",
		"--data-dir="+filepath.Join(c.Dir, "etcd", "data"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=local="+peerURL,
		// Losing the data of a throwaway cluster on power loss is fine; fsync
		// on a busy disk is what makes etcd slow in tests.
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "etcd health", []*process{etcd}, func(ctx context.Context) (bool, error) {
		return httpOK(ctx, etcdURL+"/health"), nil
	}); err != nil {
		return nil, err
	}
	step("etcd ready (%s)", time.Since(start).Round(time.Millisecond))

	apiserver, err := c.run(ComponentAPIServer, bins.Path(KubeAPIServer), nil,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--etcd-servers="+etcdURL,
		"--cert-dir="+filepath.Join(c.Dir, "pki", "apiserver"),
		"--tls-cert-file="+creds.servingCert,
		"--tls-private-key-file="+creds.servingKey,
		"--client-ca-file="+creds.ca,
		"--kubelet-client-certificate="+creds.kubeletClientCert,
		"--kubelet-client-key="+creds.kubeletClientKey,
		"--kubelet-preferred-address-types=Hostname,InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+creds.saKey,
		"--service-account-signing-key-file="+creds.saKey,
		"--service-cluster-ip-range="+ServiceClusterIPRange,
		"--authorization-mode=Node,RBAC",
		// PodSecurity is on by default; NodeRestriction pairs with the Node
		// authorizer so a kubelet may only touch its own node.
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		// The kubernetes Service would point at a loopback address nothing
		// in a pod can reach; leave it without endpoints.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "kube-apiserver /readyz", []*process{etcd, apiserver}, func(ctx context.Context) (bool, error) {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	}); err != nil {
		return nil, err
	}
	step("kube-apiserver ready at %s (%s)", c.Server, time.Since(start).Round(time.Millisecond))

	if _, err := c.run(ComponentControllerManager, bins.Path(KubeControllerManager), nil,
		"--kubeconfig="+creds.kubeconfigs["controller-manager"],
		"--authentication-kubeconfig="+creds.kubeconfigs["controller-manager"],
		"--authorization-kubeconfig="+creds.kubeconfigs["controller-manager"],
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--leader-elect=false",
		"--controllers=*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+creds.saKey,
		"--root-ca-file="+creds.ca,
		"--cluster-signing-cert-file="+creds.ca,
		"--cluster-signing-key-file="+creds.caKey,
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	if _, err := c.run(ComponentScheduler, bins.Path(KubeScheduler), nil,
		"--kubeconfig="+creds.kubeconfigs["scheduler"],
		"--authentication-kubeconfig="+creds.kubeconfigs["scheduler"],
		"--authorization-kubeconfig="+creds.kubeconfigs["scheduler"],
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--leader-elect=false",
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	stagesPath := filepath.Join(c.Dir, "kwok", "stages.yaml")
	if err := os.WriteFile(stagesPath, kwokStages, 0o644); err != nil {
		return nil, err
	}
	if _, err := c.run(ComponentKwok, bins.Path(Kwok),
		// kwok also reads ~/.kwok/kwok.yaml; a private HOME keeps a developer's
		// own kwok setup out of the cluster.
		[]string{"HOME=" + filepath.Join(c.Dir, "kwok")},
		"--kubeconfig="+creds.kubeconfigs["kwok"],
		"--config="+stagesPath,
		"--manage-nodes-with-annotation-selector="+AnnotationFakeNode+"=fake",
		"--cidr=10.244.0.0/16",
		"--node-ip=10.240.0.1",
		"--node-lease-duration-seconds=40",
	); err != nil {
		return nil, err
	}

	for i := range opts.Nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		if err := createFakeNode(ctx, cs, name); err != nil {
			return nil, err
		}
		c.NodeNames = append(c.NodeNames, name)
	}
	if err := waitFor(ctx, "fake nodes Ready", c.procs, func(ctx context.Context) (bool, error) {
		for _, name := range c.NodeNames {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || !nodeReady(n) {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return nil, err
	}
	if len(c.NodeNames) > 0 {
		step("%d fake node(s) Ready (%s)", len(c.NodeNames), time.Since(start).Round(time.Millisecond))
	}

	if opts.RealNode {
		if err := c.startRealNode(ctx, *bins, creds, progress); err != nil {
			return nil, err
		}
		c.NodeNames = append(c.NodeNames, RealNodeName)
		step("node %s Ready (%s)", RealNodeName, time.Since(start).Round(time.Millisecond))
		podEndpointIP := ""
		if opts.NetworkPolicy {
			podEndpointIP = podGateway
		}
		if c.apiService, err = startAPIServiceForwarder(ctx, cs, strings.TrimPrefix(c.Server, "https://"), podEndpointIP); err != nil {
			return nil, err
		}
		c.APIServiceAddress = c.apiService.addr
		c.APIServiceEndpoint = c.apiService.endpoint
		if c.APIServiceEndpoint != "" {
			step("pods reach the API server at the kubernetes Service address %s (DNAT to %s)", c.APIServiceAddress, c.APIServiceEndpoint)
		} else {
			step("pods reach the API server at the kubernetes Service address %s", c.APIServiceAddress)
		}
		if opts.NetworkPolicy {
			if err := c.startKubeRouter(ctx, *bins, creds); err != nil {
				return nil, err
			}
			step("kube-router enforces NetworkPolicies on node %s (%s)", RealNodeName, time.Since(start).Round(time.Millisecond))
		}
	}

	// Pods cannot be created in a namespace before its default service
	// account exists; waiting here spares every caller a retry loop.
	if err := waitFor(ctx, "service account default/default", c.procs, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return nil, err
	}
	step("cluster ready (%s); KUBECONFIG=%s", time.Since(start).Round(time.Millisecond), c.Kubeconfig)
	return c, nil
}

// RESTConfig returns a fresh admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// LogFile returns the log file of a component, e.g. ComponentAPIServer.
func (c *Cluster) LogFile(component string) string {
	return filepath.Join(c.Dir, "logs", component+".log")
}

// PIDs returns the process id of every running component by name. Each is
// also the id of the component's process group.
func (c *Cluster) PIDs() map[string]int {
	out := make(map[string]int, len(c.procs))
	for _, p := range c.procs {
		out[p.name] = p.pid()
	}
	return out
}

// Stop ends every component and waits for it, in reverse start order, and
// removes Dir when Start created it. It is safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	if c.containerdSock != "" && len(c.procs) > 0 {
		errs = append(errs, c.drainRealNode(60*time.Second))
	}
	if c.apiService != nil {
		errs = append(errs, c.apiService.close())
		c.apiService = nil
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		errs = append(errs, c.procs[i].stop(15*time.Second))
	}
	c.procs = nil
	if c.containerdSock != "" {
		errs = append(errs, c.cleanupRealNode())
		c.containerdSock = ""
	}
	// kube-router has exited: its rules go now, or they would keep
	// filtering addresses that later pods get.
	errs = append(errs, c.stopNetworkPolicyHost())
	if c.removeDir {
		errs = append(errs, os.RemoveAll(c.Dir))
		c.removeDir = false
	}
	return errors.Join(errs...)
}

func (c *Cluster) run(name, bin string, env []string, args ...string) (*process, error) {
	p, err := startProcess(name, bin, args, env, c.LogFile(name))
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// waitFor polls cond until it holds, failing early when one of procs exits.
func waitFor(ctx context.Context, what string, procs []*process, cond func(context.Context) (bool, error)) error {
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, p := range procs {
			if err := p.exited(); err != nil {
				return false, err
			}
		}
		return cond(ctx)
	})
	if err != nil && ctx.Err() != nil {
		var logs []string
		for _, p := range procs {
			logs = append(logs, fmt.Sprintf("last lines of %s:\n%s", p.logPath, LogTail(p.logPath, 15)))
		}
		return fmt.Errorf("timed out waiting for %s\n%s", what, strings.Join(logs, "\n"))
	}
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

func createFakeNode(ctx context.Context, cs kubernetes.Interface, name string) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{AnnotationFakeNode: "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
	}
	_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating fake node %s: %w", name, err)
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func httpOK(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// freePorts asks the kernel for n unused loopback ports. Another process may
// take one before the component binds it; start-up then fails loudly rather
// than hanging.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// credentials are the files a cluster's components authenticate with.
type credentials struct {
	pki                                 *pki
	ca, caKey                           string
	servingCert, servingKey             string
	kubeletClientCert, kubeletClientKey string
	saKey                               string
	kubeconfigs                         map[string]string
}

// writeCredentials creates a CA, the API server's serving certificate, the
// service account signing key and one client-certificate kubeconfig per
// identity under dir/pki.
func writeCredentials(dir, server string) (*credentials, error) {
	p, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, err
	}
	cr := &credentials{pki: p, ca: p.caFile(), caKey: p.path("ca.key"), kubeconfigs: map[string]string{}}
	cr.servingCert, cr.servingKey, err = p.serving("apiserver",
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return nil, err
	}
	cr.kubeletClientCert, cr.kubeletClientKey, err = p.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return nil, err
	}
	if cr.saKey, err = p.serviceAccountKey(); err != nil {
		return nil, err
	}
	identities := []struct{ name, user, group string }{
		{"admin", "kubernetes-admin", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		// kwok plays a kubelet for many nodes at once; the Node authorizer
		// would confine a node identity to one node, so it runs as admin.
		{"kwok", "kwok", "system:masters"},
	}
	for _, id := range identities {
		var groups []string
		if id.group != "" {
			groups = append(groups, id.group)
		}
		certFile, keyFile, err := p.client(id.name, id.user, groups...)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, id.name+".kubeconfig")
		if id.name == "admin" {
			path = filepath.Join(dir, "kubeconfig")
		}
		if err := writeKubeconfig(path, server, cr.ca, certFile, keyFile, id.user); err != nil {
			return nil, err
		}
		cr.kubeconfigs[id.name] = path
	}
	return cr, nil
}

func writeKubeconfig(path, server, caFile, certFile, keyFile, user string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, path)
}
