package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"
)

// RealNodeName is the name of the node the kubelet registers when
// Options.RealNode is set.
const RealNodeName = "localhost"

// Component names of the real node.
const (
	ComponentContainerd = "containerd"
	ComponentKubelet    = "kubelet"
)

// pauseImage is the sandbox image of the real node. It exists only in the
// node's containerd, imported at start.
const pauseImage = "localhost/kubeopencode/pause:1"

// hostTools are the programs a real node needs from the host, with the Debian
// package providing each.
var hostTools = []struct{ path, pkg string }{
	{"containerd", "containerd"},
	{"containerd-shim-runc-v2", "containerd"},
	{"ctr", "containerd"},
	{"runc", "runc"},
	{"/usr/lib/cni/bridge", "containernetworking-plugins"},
	{"/usr/lib/cni/host-local", "containernetworking-plugins"},
	{"/usr/lib/cni/loopback", "containernetworking-plugins"},
}

// RealNodeSupported says whether this host can run a real node
// (Options.RealNode) with the given features (WithNetworkPolicy:
// Options.NetworkPolicy too) and, when not, what it lacks, each with how to
// get it.
func RealNodeSupported(features ...RealNodeFeature) (ok bool, missing []string) {
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the kubelet and containerd manage mounts, cgroups and network namespaces)")
	}
	for _, t := range hostToolsFor(features) {
		var err error
		if filepath.IsAbs(t.path) {
			_, err = os.Stat(t.path)
			if err != nil {
				missing = append(missing, fmt.Sprintf("the CNI plugin %s (apt-get install -y %s)", t.path, t.pkg))
			}
			continue
		}
		if _, err = exec.LookPath(t.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install -y %s)", t.path, t.pkg))
		}
	}
	// The kubernetes Service address goes on lo with ip(8).
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (apt-get install -y iproute2)")
	}
	return len(missing) == 0, missing
}

// PodBridge is the Linux bridge the real node's pods are attached to.
const PodBridge = "kocni0"

// PodBridgeAddress is the host's IPv4 address on the pod bridge: where pods
// reach a server on this host (they cannot reach its 127.0.0.1). The bridge
// exists once the node has started its first pod.
func PodBridgeAddress() (string, error) {
	ifc, err := net.InterfaceByName(PodBridge)
	if err != nil {
		return "", fmt.Errorf("pod bridge %s: %w", PodBridge, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("pod bridge %s has no IPv4 address", PodBridge)
}

// RealNodePackages lists the Debian packages that would give this host
// what a real node with the given features needs and it lacks, each once, in
// a fixed order.
func RealNodePackages(features ...RealNodeFeature) []string {
	seen := map[string]bool{}
	var pkgs []string
	add := func(pkg string) {
		if !seen[pkg] {
			seen[pkg] = true
			pkgs = append(pkgs, pkg)
		}
	}
	for _, t := range hostToolsFor(features) {
		var err error
		if filepath.IsAbs(t.path) {
			_, err = os.Stat(t.path)
		} else {
			_, err = exec.LookPath(t.path)
		}
		if err != nil {
			add(t.pkg)
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		add("iproute2")
	}
	return pkgs
}

// hostToolsFor is hostTools and what features add.
func hostToolsFor(features []RealNodeFeature) []struct{ path, pkg string } {
	tools := slices.Clone(hostTools)
	if slices.Contains(features, WithNetworkPolicy) {
		tools = append(tools, networkPolicyTools...)
	}
	return tools
}

// checkRealNodeHost says what the host lacks to run a real node with
// features.
func checkRealNodeHost(features ...RealNodeFeature) error {
	if ok, missing := RealNodeSupported(features...); !ok {
		what := "Options.RealNode"
		if slices.Contains(features, WithNetworkPolicy) {
			what += " with Options.NetworkPolicy"
		}
		return fmt.Errorf("%s needs %s", what, strings.Join(missing, "; "))
	}
	return nil
}

// startRealNode runs containerd and a kubelet registering node "localhost".
// The settings are those that work on this project's hosts (cgroup v1, no
// systemd, no registry but loopback): see docs/local-cluster.md.
func (c *Cluster) startRealNode(ctx context.Context, bins Binaries, creds *credentials, progress io.Writer) error {
	p := creds.pki
	pauseBin, err := ensure(ctx, progress, pause)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.Dir, "node")
	c.nodeDir = dir
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	sock := filepath.Join(dir, "containerd", "containerd.sock")
	c.containerdSock = sock
	if err := os.WriteFile(filepath.Join(dir, "cni", "net.d", "10-kubeopencode.conflist"), cniConfig(filepath.Join(dir, "cni", "ipam")), 0o644); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "containerd", "config.toml")
	if err := os.WriteFile(cfgPath, containerdConfig(dir, sock), 0o644); err != nil {
		return err
	}
	containerd, err := c.run(ComponentContainerd, "containerd", nil, "--config="+cfgPath)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "containerd socket", []*process{containerd}, func(ctx context.Context) (bool, error) {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return false, nil
		}
		conn.Close()
		return true, nil
	}); err != nil {
		return err
	}
	if err := importPauseImage(ctx, pauseBin.Path(pause), filepath.Join(dir, "pause.tar"), sock); err != nil {
		return err
	}

	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	certFile, keyFile, err := p.client("kubelet", "system:node:"+RealNodeName, "system:nodes")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(c.Dir, "kubelet.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.Server, creds.ca, certFile, keyFile, "system:node:"+RealNodeName); err != nil {
		return err
	}
	servingCert, servingKey, err := p.serving("kubelet-serving", []net.IP{net.ParseIP("127.0.0.1")}, []string{RealNodeName})
	if err != nil {
		return err
	}
	kubeletConfig := filepath.Join(dir, "kubelet", "config.yaml")
	if err := os.WriteFile(kubeletConfig, kubeletConfiguration(dir, sock, ports[0], servingCert, servingKey), 0o644); err != nil {
		return err
	}
	kubelet, err := c.run(ComponentKubelet, bins.Path(Kubelet), nil,
		"--config="+kubeletConfig,
		"--kubeconfig="+kubeconfig,
		// A loopback --node-ip is refused; the API server reaches the
		// kubelet by this host name instead (--kubelet-preferred-address-types).
		"--hostname-override="+RealNodeName,
		"--root-dir="+filepath.Join(dir, "kubelet"),
		"--cert-dir="+filepath.Join(dir, "kubelet", "pki"),
		"--node-labels=kubeopencode.io/real-node=true",
	)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return err
	}
	return waitFor(ctx, "node "+RealNodeName+" Ready", []*process{containerd, kubelet}, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, RealNodeName, metav1.GetOptions{})
		return err == nil && nodeReady(n), nil
	})
}

// drainRealNode deletes the pods bound to the real node while the kubelet
// still runs, so that it stops their containers and tears down their network
// namespaces; killing containerd instead would leave both behind. The
// workload controllers go first (Deployments, ReplicaSets, StatefulSets,
// DaemonSets, ReplicationControllers, CronJobs, Jobs): with them in place the
// controller manager, or an operator running on the node, would replace
// every deleted pod and the drain would wait out its whole timeout.
func (c *Cluster) drainRealNode(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cs, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return err
	}
	mc, err := metadata.NewForConfig(c.restConfig)
	if err != nil {
		return err
	}
	if err := deleteWorkloadControllers(ctx, mc); err != nil {
		return err
	}
	sel := fields.OneTermEqualSelector("spec.nodeName", RealNodeName).String()
	for {
		// Jobs again on every round: an operator still running may have
		// created one for a pending task in the meantime.
		jobsLeft, jobsErr := deleteAll(ctx, mc, jobs)
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err == nil {
			for _, pod := range pods.Items {
				// A pod the garbage collector deletes gets its full grace
				// period (30s by default); one second is enough here.
				if g := pod.DeletionGracePeriodSeconds; g != nil && *g <= 1 {
					continue
				}
				err := cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
				if err != nil && !isNotFound(err) {
					return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
				}
			}
			// The kubelet stops each sandbox once its pod is gone; each runc
			// shim then exits.
			if len(pods.Items) == 0 && jobsErr == nil && jobsLeft == 0 && len(shimProcesses(c.containerdSock)) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			var left []string
			if pods != nil {
				for _, p := range pods.Items {
					left = append(left, p.Namespace+"/"+p.Name)
				}
			}
			return fmt.Errorf("pods on node %s not stopped within %s (left: %s; jobs left: %d, %v)", RealNodeName, timeout, strings.Join(left, ", "), jobsLeft, jobsErr)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// workloadKinds own pods, those that own others first.
var workloadKinds = []schema.GroupVersionResource{
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "batch", Version: "v1", Resource: "cronjobs"},
	{Group: "apps", Version: "v1", Resource: "statefulsets"},
	{Group: "apps", Version: "v1", Resource: "daemonsets"},
	{Group: "apps", Version: "v1", Resource: "replicasets"},
	{Version: "v1", Resource: "replicationcontrollers"},
	jobs,
}

var jobs = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}

// deleteWorkloadControllers deletes every object of workloadKinds in all
// namespaces.
func deleteWorkloadControllers(ctx context.Context, mc metadata.Interface) error {
	for _, k := range workloadKinds {
		if _, err := deleteAll(ctx, mc, k); err != nil {
			return err
		}
	}
	return nil
}

// deleteAll deletes the objects of a resource that are not being deleted yet
// (their pods go through the garbage collector) and returns how many exist.
func deleteAll(ctx context.Context, mc metadata.Interface, gvr schema.GroupVersionResource) (int, error) {
	list, err := mc.Resource(gvr).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("listing %s to stop them before the node drains: %w", gvr.Resource, err)
	}
	bg := metav1.DeletePropagationBackground
	for _, o := range list.Items {
		if o.DeletionTimestamp != nil {
			continue
		}
		err := mc.Resource(gvr).Namespace(o.Namespace).Delete(ctx, o.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		if err != nil && !isNotFound(err) {
			return 0, fmt.Errorf("deleting %s %s/%s before the node drains: %w", gvr.Resource, o.Namespace, o.Name, err)
		}
	}
	return len(list.Items), nil
}

// cleanupRealNode kills what containerd leaves running after it exits (shims
// and their containers live in their own sessions) and unmounts what the
// kubelet and containerd mounted under the node directory.
func (c *Cluster) cleanupRealNode() error {
	var errs []error
	for _, pid := range shimProcesses(c.containerdSock) {
		for _, d := range descendants(pid) {
			_ = syscall.Kill(d, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	errs = append(errs, unmountUnder(c.nodeDir))
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var status interface{ Status() metav1.Status }
	return errors.As(err, &status) && status.Status().Code == 404
}

// shimProcesses returns the runc shims serving the containerd at sock.
func shimProcesses(sock string) []int {
	if sock == "" {
		return nil
	}
	var out []int
	for _, pid := range allPIDs() {
		cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.HasSuffix(args[0], "containerd-shim-runc-v2") && slices.Contains(args, sock) {
			out = append(out, pid)
		}
	}
	return out
}

// descendants returns the children of pid, their children and so on.
func descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range allPIDs() {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "stat"))
		if err != nil {
			continue
		}
		// The command name in parentheses may hold spaces; the parent pid is
		// the second field after it.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, ch := range children[p] {
			out = append(out, ch)
			queue = append(queue, ch)
		}
	}
	return out
}

func allPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) error {
	if dir == "" {
		return nil
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, unescapeMountPath(f[4]))
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// importPauseImage packs the pause binary as a one-layer image and imports it
// into containerd's Kubernetes namespace, where the CRI plugin looks for its
// sandbox image before trying to pull it.
func importPauseImage(ctx context.Context, binary, tarPath, sock string) error {
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config = v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	tag, err := name.NewTag(pauseImage)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "--namespace", "k8s.io", "images", "import", tarPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("importing the pause image into containerd: %w\n%s", err, out)
	}
	return nil
}

// containerdConfig keeps all of containerd's state under dir so that several
// clusters and the host's own containerd do not meet.
func containerdConfig(dir, sock string) []byte {
	q := strconv.Quote
	return fmt.Appendf(nil, `version = 2
root = %s
state = %s

[grpc]
  address = %s

[ttrpc]
  address = %s

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %s
  # Without it runc fails every sandbox: it may not lower its own
  # oom_score_adj here ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = %s
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %s
`,
		q(filepath.Join(dir, "containerd", "root")),
		q(filepath.Join(dir, "containerd", "state")),
		q(sock), q(sock+".ttrpc"), q(pauseImage),
		q(filepath.Join(dir, "runc")),
		q(filepath.Join(dir, "cni", "net.d")))
}

// cniConfig is a bridge network for the node's pods; addresses are recorded
// under ipamDir.
func cniConfig(ipamDir string) []byte {
	cfg := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kubeopencode",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      PodBridge,
				"isGateway":   true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": "10.89.0.0/16", "gateway": podGateway}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
		},
	}
	out, _ := json.MarshalIndent(cfg, "", "  ")
	return out
}

// kubeletConfiguration holds the settings a kubelet needs on this project's
// hosts: cgroup v1 without systemd, swap allowed, no per-QoS cgroups, and a
// kubelet API that the API server on the same host may use without
// credentials.
func kubeletConfiguration(dir, sock string, port int, certFile, keyFile string) []byte {
	return fmt.Appendf(nil, `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: 0
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
resolvConf: ""
# The kubelet's iptables chains (KUBE-IPTABLES-HINT, KUBE-FIREWALL and
# canaries) serve kube-proxy, which this cluster does not run; they would
# outlive the node on a host with iptables.
makeIPTablesUtilChains: false
podLogsDir: %s
clusterDomain: cluster.local
serializeImagePulls: false
registerNode: true
# The host disk is shared with builds; do not evict pods or delete images
# because it fills up.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%%"
  imagefs.available: "0%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, port, strconv.Quote(certFile), strconv.Quote(keyFile), sock, strconv.Quote(filepath.Join(dir, "pod-logs")))
}
