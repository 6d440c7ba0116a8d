package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/internal/nettest"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

func TestNetworkPolicyNeedsRealNode(t *testing.T) {
	_, err := cluster.Start(t.Context(), cluster.Options{NetworkPolicy: true})
	require.ErrorContains(t, err, "Options.NetworkPolicy needs Options.RealNode")
}

// TestRealNodeNetworkPolicy proves, with real pods and kube-router, that egress
// NetworkPolicies hold on the real node: without a policy a pod reaches two
// servers on this host, the kubernetes Service and a stand-in metadata address;
// a policy that allows one server only cuts off the rest; an ipBlock of
// 0.0.0.0/0 with the metadata address as an exception allows everything but
// it; and Stop leaves the host's iptables, ipsets and nf_tables as they were.
func TestRealNodeNetworkPolicy(t *testing.T) {
	requireRealNodeHost(t)
	requireNetworkPolicyHost(t)
	ctx := t.Context()
	parent := t
	image := pushExiterImage(t)
	before := hostFirewall(t)

	c, cs := startCluster(t, cluster.Options{RealNode: true, NetworkPolicy: true, Progress: t.Output()})
	out, err := exec.Command("iptables", "-S", "INPUT").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "-j KUBE-ROUTER-INPUT", "kube-router hooks INPUT once Start returns")
	require.NotEmpty(t, c.APIServiceEndpoint)

	ns := restrictedNamespace(t, cs)
	selected := map[string]string{"role": "agent"}
	prober := createProbePod(t, cs, ns, "prober", image, selected, nil)
	bystander := createProbePod(t, cs, ns, "bystander", image, map[string]string{"role": "other"}, nil)
	proberIP := waitProbePod(t, cs, prober)
	bystanderIP := waitProbePod(t, cs, bystander)

	bridge, err := cluster.PodBridgeAddress()
	require.NoError(t, err)
	serverA := nettest.ServeOutsideNodePorts(t, bridge)
	serverB := nettest.ServeOutsideNodePorts(t, bridge)
	nettest.AddLoopbackAddress(t, nettest.MetadataAddress)
	metadata := nettest.Serve(t, net.JoinHostPort(nettest.MetadataAddress, "80"))
	targets := []struct{ name, addr string }{
		{"A", serverA}, {"B", serverB}, {"kubernetes Service", c.APIServiceAddress}, {"metadata", metadata},
	}
	expect := func(t *testing.T, podIP string, want map[string]string) {
		t.Helper()
		for _, tg := range targets {
			got := probe(t, podIP, tg.addr, time.Second)
			assert.Equal(t, want[tg.name], outcome(got), "pod %s dialling %s (%s): %s", podIP, tg.name, tg.addr, got)
		}
	}
	allOK := map[string]string{"A": "ok", "B": "ok", "kubernetes Service": "ok", "metadata": "ok"}
	onlyA := map[string]string{"A": "ok", "B": blocked, "kubernetes Service": blocked, "metadata": blocked}

	t.Run("NoPolicyAllowsAll", func(t *testing.T) {
		expect(t, proberIP, allOK)
		expect(t, bystanderIP, allOK)
	})

	portA := intstr.FromInt32(int32(nettest.Port(t, serverA)))
	policy := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "egress", Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selected},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: bridge + "/32"}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: &portA}},
			}},
		},
	}

	t.Run("AllowOnlyOneHostPort", func(t *testing.T) {
		created := time.Now()
		_, err := cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, policy, metav1.CreateOptions{})
		require.NoError(t, err)
		delay := waitProbe(t, proberIP, serverB, blocked, created)
		t.Logf("enforcement began %s after the NetworkPolicy was created", delay)
		expect(t, proberIP, onlyA)
		// The policy selects by label: the other pod is not restricted.
		expect(t, bystanderIP, allOK)
	})

	t.Run("NewPodIsRestrictedOnceSynced", func(t *testing.T) {
		// A pod that starts under an existing policy: kube-router adds its
		// rules when it learns the pod's address, so the very first
		// connections may still pass. The pod records when they stop.
		late := createProbePod(t, cs, ns, "latecomer", image, selected, []corev1.EnvVar{{Name: "DIAL_AT_START", Value: serverB}})
		lateIP := waitProbePod(t, cs, late)
		logs := podLogs(t, cs, late, "main")
		t.Logf("a new selected pod dialling B from its start:\n%s", logs)
		assert.Contains(t, logs, "dial-at-start "+serverB+" ")
		// Whatever the first attempts did, the rules hold once synced.
		waitProbe(t, lateIP, serverB, blocked, time.Now())
		expect(t, lateIP, onlyA)
	})

	t.Run("CIDRWithExceptCutsOutMetadata", func(t *testing.T) {
		p, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, policy.Name, metav1.GetOptions{})
		require.NoError(t, err)
		p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{nettest.MetadataAddress + "/32"}}}},
		}}
		updated := time.Now()
		_, err = cs.NetworkingV1().NetworkPolicies(ns).Update(ctx, p, metav1.UpdateOptions{})
		require.NoError(t, err)
		delay := waitProbe(t, proberIP, serverB, "ok", updated)
		t.Logf("the updated NetworkPolicy took effect %s after the update", delay)
		// The kubernetes Service is judged by its endpoint on the pod
		// bridge (APIServiceEndpoint), which 0.0.0.0/0 covers.
		expect(t, proberIP, map[string]string{"A": "ok", "B": "ok", "kubernetes Service": "ok", "metadata": blocked})
	})

	t.Run("DeletingThePolicyLiftsIt", func(t *testing.T) {
		deleted := time.Now()
		require.NoError(t, cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, policy.Name, metav1.DeleteOptions{}))
		delay := waitProbe(t, proberIP, metadata, "ok", deleted)
		t.Logf("the deletion took effect after %s", delay)
		expect(t, proberIP, allOK)
	})

	t.Run("StopRestoresHostFirewall", func(t *testing.T) {
		if parent.Failed() {
			t.Logf("last lines of %s:\n%s", c.LogFile(cluster.ComponentKubeRouter), cluster.LogTail(c.LogFile(cluster.ComponentKubeRouter), 40))
		}
		pid := c.PIDs()[cluster.ComponentKubeRouter]
		require.NotZero(t, pid)
		require.NoError(t, c.Stop())
		assert.NoFileExists(t, fmt.Sprintf("/proc/%d/cmdline", pid), "kube-router exited")
		after := hostFirewall(t)
		assert.False(t, after.hasKubeRouter(), "kube-router's chains or ipsets after Stop:\n%s\n%s", after.iptables, after.ipsets)
		assert.Equal(t, before.bridgeNF, after.bridgeNF, "net.bridge.bridge-nf-call-iptables after Stop")
		if before.hasKubeRouter() {
			t.Logf("an earlier run left kube-router's chains or ipsets, which Start removed; not comparing with the state before")
			return
		}
		assert.Equal(t, before.iptables, after.iptables, "iptables-save (filter and nat) after Stop")
		assert.Equal(t, before.ipsets, after.ipsets, "ipset list -n after Stop")
		assert.Equal(t, before.nft, after.nft, "nft list ruleset after Stop")
	})
}

// requireNetworkPolicyHost skips unless kube-router can run: iptables and
// ipset (Debian packages of the same names).
func requireNetworkPolicyHost(t *testing.T) {
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore", "ipset"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("NetworkPolicy needs %s: apt-get install -y iptables ipset", tool)
		}
	}
}

func createProbePod(t *testing.T, cs kubernetes.Interface, ns, name, image string, labels map[string]string, env []corev1.EnvVar) *corev1.Pod {
	t.Helper()
	spec := newRealJob(ns, name, image, 0).Spec.Template.Spec
	spec.InitContainers = nil
	spec.Containers[0].Env = append(env, corev1.EnvVar{Name: "LISTEN", Value: ":8080"})
	pod, err := cs.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       spec,
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return pod
}

// waitProbePod waits until the pod's dial server answers and returns the
// pod's address.
func waitProbePod(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod) string {
	t.Helper()
	var ip string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return false, nil
		}
		ip = p.Status.PodIP
		resp, err := http.Get("http://" + net.JoinHostPort(ip, "8080") + "/dial?addr=")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return true, nil
	})
	require.NoError(t, err, "pod %s/%s serves its dial endpoint", pod.Namespace, pod.Name)
	return ip
}

// blocked is the outcome of a connection a NetworkPolicy stops: kube-router
// REJECTs it, so the pod sees "connection refused" or, when the kernel's
// ICMP rate limit swallows the rejection, a timeout.
const blocked = "blocked"

// outcome is "ok" or blocked for a probe result, and the result otherwise.
func outcome(result string) string {
	if result == "refused" || result == "timeout" {
		return blocked
	}
	return result
}

// probe has the pod at podIP dial addr with timeout and returns the result:
// "ok", "refused", "timeout" or "error: ...".
func probe(t *testing.T, podIP, addr string, timeout time.Duration) string {
	t.Helper()
	client := &http.Client{Timeout: timeout + 10*time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(podIP, "8080") + "/dial?addr=" + url.QueryEscape(addr) + "&timeout=" + timeout.String())
	require.NoError(t, err, "asking pod %s to dial %s", podIP, addr)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return strings.TrimSpace(string(body))
}

// waitProbe polls until the pod at podIP dialling addr gets want ("ok" or
// blocked) and returns how long after since the successful attempt began.
func waitProbe(t *testing.T, podIP, addr, want string, since time.Time) time.Duration {
	t.Helper()
	// A short timeout while waiting for "ok" keeps the polls frequent; a
	// blocked outcome must not come from a slow but allowed connection.
	timeout := 100 * time.Millisecond
	if want == blocked {
		timeout = time.Second
	}
	var got string
	var at time.Time
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		at = time.Now()
		got = probe(t, podIP, addr, timeout)
		return outcome(got) == want, nil
	})
	require.NoError(t, err, "pod %s dialling %s: want %s, got %s", podIP, addr, want, got)
	return at.Sub(since).Round(time.Millisecond)
}

type firewallState struct {
	iptables, ipsets, nft, bridgeNF string
}

// hasKubeRouter says whether s holds one of kube-router's chains or ipsets,
// or this package's nat chain.
func (s firewallState) hasKubeRouter() bool {
	for _, p := range []string{"KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-", "KUBE-SRC-", "KUBE-DST-", "KUBEOPENCODE-"} {
		if strings.Contains(s.iptables, p) || strings.Contains(s.ipsets, p) {
			return true
		}
	}
	return false
}

var (
	saveComment = regexp.MustCompile(`(?m)^#.*\n`)
	saveCounts  = regexp.MustCompile(`\[\d+:\d+\]`)
)

// hostFirewall records the host's iptables rules (filter and nat, without
// counters), ipset names, nf_tables rule set and bridge-nf-call-iptables.
func hostFirewall(t *testing.T) firewallState {
	t.Helper()
	var s firewallState
	for _, table := range []string{"filter", "nat"} {
		out, _ := exec.Command("iptables-save", "-t", table).Output()
		s.iptables += saveCounts.ReplaceAllString(saveComment.ReplaceAllString(string(out), ""), "")
	}
	out, err := exec.Command("ipset", "list", "-n").CombinedOutput()
	require.NoError(t, err, "%s", out)
	s.ipsets = string(out)
	if _, err := exec.LookPath("nft"); err == nil {
		out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
		require.NoError(t, err, "%s", out)
		s.nft = string(out)
	}
	data, _ := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	s.bridgeNF = string(data)
	return s
}
