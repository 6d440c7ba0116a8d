package jobbuilder

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// allows says whether policy lets a pod connect to addr over proto, read
// the way the NetworkPolicy API defines it for ipBlock peers.
func allows(policy *networkingv1.NetworkPolicy, proto corev1.Protocol, addr string) bool {
	ap := netip.MustParseAddrPort(addr)
	for _, r := range policy.Spec.Egress {
		portOK := len(r.Ports) == 0
		for _, p := range r.Ports {
			if (p.Protocol == nil || *p.Protocol == proto) && (p.Port == nil || p.Port.IntValue() == int(ap.Port())) {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		for _, peer := range r.To {
			if peer.IPBlock == nil {
				continue
			}
			if !netip.MustParsePrefix(peer.IPBlock.CIDR).Contains(ap.Addr()) {
				continue
			}
			excepted := false
			for _, e := range peer.IPBlock.Except {
				if netip.MustParsePrefix(e).Contains(ap.Addr()) {
					excepted = true
				}
			}
			if !excepted {
				return true
			}
		}
	}
	return false
}

func egressAgent(eg v1alpha1.Egress) *agentW {
	w := makeAgent()
	w.a.Spec.Network = &v1alpha1.AgentNetwork{Egress: &eg}
	return w
}

// The API server as a cluster shows it: the kubernetes Service's address
// first, then its endpoints.
var testAPI = []netip.AddrPort{
	netip.MustParseAddrPort("10.96.0.1:443"),
	netip.MustParseAddrPort("192.168.10.2:6443"),
	netip.MustParseAddrPort("192.168.10.3:6443"),
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func egressInput(task *v1alpha1.Task, agent *v1alpha1.Agent, hosts map[string][]netip.Addr) Input {
	in := input(task, agent)
	in.Egress = &EgressInput{Hosts: hosts, API: testAPI}
	return in
}

func checkPlan(t *testing.T, c corev1.Container) contract.EgressCheckPlan {
	t.Helper()
	require.Len(t, c.Env, 1)
	p, err := contract.DecodeEgressCheckPlan([]byte(c.Env[0].Value))
	require.NoError(t, err)
	return *p
}

func TestNoEgressNoPolicy(t *testing.T) {
	out, err := Build(input(makeTask("fix").obj(), makeAgent().obj()))
	require.NoError(t, err)
	assert.Nil(t, out.NetworkPolicy)
	assert.Nil(t, out.Egress)
	assert.Empty(t, out.Job.Spec.Template.Spec.HostAliases)
	assert.Equal(t, ContextInitContainer, out.Job.Spec.Template.Spec.InitContainers[0].Name)
}

func TestEgressPolicyAllowsOnlyTheList(t *testing.T) {
	agent := egressAgent(v1alpha1.Egress{
		DNS: v1alpha1.EgressDNSClusterResolver,
		Allow: []v1alpha1.EgressRule{
			{Host: "api.openai.com", Ports: []int32{443}},
			{CIDR: "0.0.0.0/0", Ports: []int32{443, 80}},
			{CIDR: "10.20.0.0/16", Ports: []int32{5432}},
			{CIDR: "2001:db8::/32", Ports: []int32{53}, Protocol: corev1.ProtocolUDP},
		},
	}).context(gitCtx("https://github.com/acme/tools.git", "/opt/tools", "")).obj()
	task := makeTask("fix").
		context(gitCtx("git@git.internal.example:acme/app.git", "/workspace/app", "")).
		context(gitCtx("http://10.30.0.4:8080/acme/lib.git", "/workspace/lib", "")).obj()

	names, err := EgressHosts(task, agent)
	require.NoError(t, err)
	assert.Equal(t, []string{"api.openai.com", "git.internal.example", "github.com"}, names, "sorted, no IP literals")

	out, err := Build(egressInput(task, agent, map[string][]netip.Addr{
		"api.openai.com":       addrs("162.159.140.245", "172.66.0.243"),
		"github.com":           addrs("140.82.121.4"),
		"git.internal.example": addrs("10.40.1.7"),
	}))
	require.NoError(t, err)
	p := out.NetworkPolicy
	require.NotNil(t, p)
	assert.Equal(t, "fix-egress", p.Name)
	assert.Equal(t, "team-a", p.Namespace)
	assert.Equal(t, map[string]string{LabelTaskUID: string(task.UID)}, p.Spec.PodSelector.MatchLabels, "selects this Task's pod only")
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, p.Spec.PolicyTypes, "ingress is left alone")
	require.Len(t, p.OwnerReferences, 1)
	assert.Equal(t, "Task", p.OwnerReferences[0].Kind)

	for _, c := range []struct {
		proto corev1.Protocol
		addr  string
		want  bool
		why   string
	}{
		{corev1.ProtocolTCP, "162.159.140.245:443", true, "a host name's addresses"},
		{corev1.ProtocolTCP, "172.66.0.243:443", true, "every address of it"},
		{corev1.ProtocolTCP, "203.0.113.9:443", true, "0.0.0.0/0 on 443"},
		{corev1.ProtocolTCP, "203.0.113.9:22", false, "0.0.0.0/0 is not on 22"},
		{corev1.ProtocolTCP, "169.254.169.254:80", false, "metadata is cut out of 0.0.0.0/0"},
		{corev1.ProtocolTCP, "100.100.100.200:80", false, "Alibaba's metadata too"},
		{corev1.ProtocolTCP, "10.96.0.1:443", false, "the API Service address on its port is cut out"},
		{corev1.ProtocolTCP, "192.168.10.2:6443", false, "an API endpoint is not on an allowed port"},
		{corev1.ProtocolTCP, "10.20.5.5:5432", true, "a cidr with its port"},
		{corev1.ProtocolTCP, "10.20.5.5:443", true, "the allow-list is a union: 0.0.0.0/0 covers it on 443"},
		{corev1.ProtocolUDP, "[2001:db8::53]:53", true, "an IPv6 range over UDP"},
		{corev1.ProtocolTCP, "[2001:db8::53]:53", false, "not over TCP"},
		{corev1.ProtocolTCP, "140.82.121.4:443", true, "the Agent's Git context over https"},
		{corev1.ProtocolTCP, "10.40.1.7:22", true, "an scp-like Git URL is SSH on 22"},
		{corev1.ProtocolTCP, "10.40.1.7:2222", false, "and nothing else there"},
		{corev1.ProtocolTCP, "10.30.0.4:8080", true, "a Git URL's explicit port on an IP"},
		{corev1.ProtocolTCP, "10.30.0.4:8081", false, "only that port"},
	} {
		assert.Equal(t, c.want, allows(p, c.proto, c.addr), "%s %s: %s", c.proto, c.addr, c.why)
	}

	// DNS goes to the cluster resolver's pods only.
	dns := p.Spec.Egress[0]
	require.Len(t, dns.To, 1)
	assert.Equal(t, map[string]string{"k8s-app": "kube-dns"}, dns.To[0].PodSelector.MatchLabels)
	assert.Equal(t, map[string]string{"kubernetes.io/metadata.name": "kube-system"}, dns.To[0].NamespaceSelector.MatchLabels)
	assert.Len(t, dns.Ports, 2)

	pod := out.Job.Spec.Template.Spec
	assert.Equal(t, []corev1.HostAlias{
		{IP: "10.40.1.7", Hostnames: []string{"git.internal.example"}},
		{IP: "140.82.121.4", Hostnames: []string{"github.com"}},
		{IP: "162.159.140.245", Hostnames: []string{"api.openai.com"}},
		{IP: "172.66.0.243", Hostnames: []string{"api.openai.com"}},
	}, pod.HostAliases, "the names are pinned to the addresses the policy allows")

	require.Equal(t, EgressCheckContainer, pod.InitContainers[0].Name, "the check runs before anything else")
	chk := pod.InitContainers[0]
	assert.Equal(t, testContextInit, chk.Image)
	assert.Equal(t, []string{"--egress-check"}, chk.Args)
	assert.Equal(t, ptr.To(true), chk.SecurityContext.ReadOnlyRootFilesystem)
	plan := checkPlan(t, chk)
	assert.Equal(t, []contract.EgressProbe{
		{Address: "10.96.0.1:443", What: "Kubernetes API"},
		{Address: "192.168.10.2:6443", What: "Kubernetes API endpoint"},
		{Address: "192.168.10.3:6443", What: "Kubernetes API endpoint"},
		{Address: "169.254.169.254:80", What: "cloud metadata"},
	}, plan.Targets)
	assert.Equal(t, EgressCheckWaitSeconds, plan.WaitSeconds)
	for _, target := range plan.Targets {
		assert.False(t, allows(p, corev1.ProtocolTCP, target.Address), "the check tries only what the policy refuses: %s", target)
	}

	require.NotNil(t, out.Egress)
	assert.True(t, out.Egress.Verifiable)
	assert.Equal(t, []string{
		"DNS to the cluster resolver (kube-system pods k8s-app=kube-dns) UDP,TCP 53",
		"api.openai.com (162.159.140.245, 172.66.0.243) TCP 443",
		"0.0.0.0/0 TCP 443,80 except 169.254.169.254/32, 100.100.100.200/32, 10.96.0.1/32",
		"10.20.0.0/16 TCP 5432",
		"2001:db8::/32 UDP 53",
		"Git https://github.com/acme/tools.git: github.com (140.82.121.4) TCP 443",
		"Git git@git.internal.example:acme/app.git: git.internal.example (10.40.1.7) TCP 22",
		"Git http://10.30.0.4:8080/acme/lib.git (10.30.0.4) TCP 8080",
	}, out.Egress.Allowed)

	// The resolution travels with the policy, so a retry can rebuild the
	// same Job.
	var rec EgressInput
	require.NoError(t, json.Unmarshal([]byte(p.Annotations[AnnotationEgressResolution]), &rec))
	assert.Equal(t, addrs("162.159.140.245", "172.66.0.243"), rec.Hosts["api.openai.com"])
	assert.Equal(t, testAPI, rec.API)
}

func TestEgressDefaultDenyAndNoDNS(t *testing.T) {
	out, err := Build(egressInput(makeTask("fix").obj(), egressAgent(v1alpha1.Egress{DNS: v1alpha1.EgressDNSNone}).obj(), nil))
	require.NoError(t, err)
	p := out.NetworkPolicy
	require.NotNil(t, p.Spec.Egress, "an empty, non-nil list denies all egress")
	assert.Empty(t, p.Spec.Egress)
	for _, a := range []string{"10.96.0.1:443", "8.8.8.8:53", "140.82.121.4:443"} {
		assert.False(t, allows(p, corev1.ProtocolTCP, a), a)
	}
	assert.Empty(t, out.Egress.Allowed)
}

func TestEgressKubernetesAPI(t *testing.T) {
	agent := egressAgent(v1alpha1.Egress{KubernetesAPI: true, Allow: []v1alpha1.EgressRule{{CIDR: "0.0.0.0/0", Ports: []int32{443}}}}).obj()
	out, err := Build(egressInput(makeTask("fix").obj(), agent, nil))
	require.NoError(t, err)
	p := out.NetworkPolicy
	for _, a := range testAPI {
		assert.True(t, allows(p, corev1.ProtocolTCP, a.String()), "the API server is allowed: %s", a)
	}
	assert.False(t, allows(p, corev1.ProtocolTCP, "169.254.169.254:80"), "metadata still is not")
	assert.False(t, allows(p, corev1.ProtocolTCP, "169.254.169.254:443"), "on no port")
	plan := checkPlan(t, out.Job.Spec.Template.Spec.InitContainers[0])
	assert.Equal(t, []contract.EgressProbe{{Address: "169.254.169.254:80", What: "cloud metadata"}}, plan.Targets)
	assert.False(t, out.Egress.Verifiable, "metadata may not answer even unfenced: the check proves nothing")
}

func TestEgressMetadataByExactCIDR(t *testing.T) {
	agent := egressAgent(v1alpha1.Egress{KubernetesAPI: true, Allow: []v1alpha1.EgressRule{{CIDR: "169.254.169.254/32", Ports: []int32{80}}}}).obj()
	out, err := Build(egressInput(makeTask("fix").obj(), agent, nil))
	require.NoError(t, err)
	assert.True(t, allows(out.NetworkPolicy, corev1.ProtocolTCP, "169.254.169.254:80"))
	for _, c := range out.Job.Spec.Template.Spec.InitContainers {
		assert.NotEqual(t, EgressCheckContainer, c.Name, "nothing is left to check")
	}
	assert.False(t, out.Egress.Verifiable)
}

func TestEgressRefusesProtectedAddressesClearly(t *testing.T) {
	cases := []struct {
		name  string
		eg    v1alpha1.Egress
		task  *v1alpha1.Task
		hosts map[string][]netip.Addr
		want  string
	}{
		{
			name: "cidr is an API endpoint",
			eg:   v1alpha1.Egress{Allow: []v1alpha1.EgressRule{{CIDR: "192.168.10.2/32", Ports: []int32{6443}}}},
			want: "network.egress.allow[0].cidr 192.168.10.2/32 is the address of the Kubernetes API on one of its ports: set network.egress.kubernetesAPI: true",
		},
		{
			name:  "host resolves to metadata",
			eg:    v1alpha1.Egress{Allow: []v1alpha1.EgressRule{{Host: "evil.example", Ports: []int32{80}}}},
			hosts: map[string][]netip.Addr{"evil.example": addrs("169.254.169.254")},
			want:  `network.egress.allow[0].host "evil.example" resolves only to addresses network.egress never allows through a host name: 169.254.169.254 (cloud metadata)`,
		},
		{
			name: "Git repository on the API Service",
			eg:   v1alpha1.Egress{},
			task: makeTask("fix").context(gitCtx("https://10.96.0.1/acme/app.git", "/workspace/app", "")).obj(),
			want: `Git context repository "https://10.96.0.1/acme/app.git" is on the address of the Kubernetes API`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			task := c.task
			if task == nil {
				task = makeTask("fix").obj()
			}
			_, err := Build(egressInput(task, egressAgent(c.eg).obj(), c.hosts))
			var berr *Error
			require.ErrorAs(t, err, &berr)
			assert.Equal(t, v1alpha1.ReasonInvalidEgress, berr.Reason)
			assert.Contains(t, berr.Message, "Task team-a/fix, Agent default: ")
			assert.Contains(t, berr.Message, c.want)
		})
	}
}

func TestEgressHostAddressesFiltered(t *testing.T) {
	// A name that resolves to a public address and to the API Service
	// keeps only the public one, in the policy and in /etc/hosts.
	agent := egressAgent(v1alpha1.Egress{Allow: []v1alpha1.EgressRule{{Host: "mixed.example", Ports: []int32{443}}}}).obj()
	out, err := Build(egressInput(makeTask("fix").obj(), agent, map[string][]netip.Addr{"mixed.example": addrs("10.96.0.1", "203.0.113.7")}))
	require.NoError(t, err)
	assert.True(t, allows(out.NetworkPolicy, corev1.ProtocolTCP, "203.0.113.7:443"))
	assert.False(t, allows(out.NetworkPolicy, corev1.ProtocolTCP, "10.96.0.1:443"))
	assert.Equal(t, []corev1.HostAlias{{IP: "203.0.113.7", Hostnames: []string{"mixed.example"}}}, out.Job.Spec.Template.Spec.HostAliases)
}

func TestEgressNeedsResolution(t *testing.T) {
	agent := egressAgent(v1alpha1.Egress{Allow: []v1alpha1.EgressRule{{Host: "api.openai.com", Ports: []int32{443}}}}).obj()
	_, err := Build(input(makeTask("fix").obj(), agent))
	require.Error(t, err, "no egress input: the builder never writes an open policy")
	_, err = Build(egressInput(makeTask("fix").obj(), agent, map[string][]netip.Addr{}))
	require.ErrorContains(t, err, `host "api.openai.com" of Agent default was not resolved`)
}

func TestEgressDeterministic(t *testing.T) {
	agent := egressAgent(v1alpha1.Egress{Allow: []v1alpha1.EgressRule{{Host: "b.example", Ports: []int32{443}}, {Host: "a.example", Ports: []int32{443}}}}).obj()
	hosts := map[string][]netip.Addr{"a.example": addrs("203.0.113.2", "203.0.113.1"), "b.example": addrs("203.0.113.1")}
	first, err := Build(egressInput(makeTask("fix").obj(), agent, hosts))
	require.NoError(t, err)
	for range 20 {
		again, err := Build(egressInput(makeTask("fix").obj(), agent, hosts))
		require.NoError(t, err)
		assert.Equal(t, first.NetworkPolicy, again.NetworkPolicy)
		assert.Equal(t, first.Job, again.Job)
	}
	assert.Equal(t, []corev1.HostAlias{
		{IP: "203.0.113.1", Hostnames: []string{"a.example", "b.example"}},
		{IP: "203.0.113.2", Hostnames: []string{"a.example"}},
	}, first.Job.Spec.Template.Spec.HostAliases)
}
