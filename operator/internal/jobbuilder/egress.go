package jobbuilder

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// EgressCheckContainer is the init container that runs first in the pod of
// a Task whose Agent sets network.egress: context-init --egress-check.
const EgressCheckContainer = "egress-check"

// AnnotationEgressResolution, on a Task's NetworkPolicy, records the
// EgressInput it was written from (JSON), so that a Job created after a
// retry pins the same addresses the policy allows.
const AnnotationEgressResolution = "kubeopencode.io/egress-resolution"

// EgressCheckWaitSeconds is how long the egress check lets the network
// plugin take to start enforcing a new pod's policy.
const EgressCheckWaitSeconds = 30

// metadataProbe is the address the egress check tries for the cloud
// metadata service (every major cloud serves it on port 80).
var metadataProbe = netip.MustParseAddrPort("169.254.169.254:80")

// metadataAddrs are the cloud metadata endpoints, cut out of every cidr of
// an allow-list: AWS, GCP, Azure and OpenStack (169.254.169.254), AWS over
// IPv6 (fd00:ec2::254) and Alibaba Cloud (100.100.100.200).
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
}

// EgressInput is what the controller looked up for a Task whose Agent sets
// network.egress.
type EgressInput struct {
	// Hosts maps each name EgressHosts returned to the addresses it
	// resolved to.
	Hosts map[string][]netip.Addr `json:"hosts,omitempty"`
	// API is where pods reach the Kubernetes API server: its Service's
	// address and port, then its endpoints.
	API []netip.AddrPort `json:"api"`
}

// EgressSummary says what a Task's NetworkPolicy allows and what its pod
// checks, for the Task's status.
type EgressSummary struct {
	// Allowed: see v1alpha1.TaskEgressStatus.Allowed.
	Allowed []string
	// Verifiable is false when the pod's check can only try addresses that
	// may not answer even without a policy (the API server is allowed), so
	// its passing proves nothing.
	Verifiable bool
}

// egressOn says whether the Agent asks for egress isolation.
func egressOn(agent *v1alpha1.Agent) *v1alpha1.Egress {
	if agent.Spec.Network == nil {
		return nil
	}
	return agent.Spec.Network.Egress
}

// gitDest is a host and port a Git context clones from.
type gitDest struct {
	repo string
	host string
	port int32
}

// gitDestinations lists where the Task's Git contexts (the Agent's first)
// connect, as git-init parses their URLs.
func gitDestinations(task *v1alpha1.Task, agent *v1alpha1.Agent) ([]gitDest, error) {
	var out []gitDest
	add := func(items []v1alpha1.ContextItem) error {
		for _, c := range items {
			if c.Type != v1alpha1.ContextTypeGit || c.Git == nil {
				continue
			}
			ep, err := transport.NewEndpoint(c.Git.Repository)
			if err != nil || ep.Host == "" {
				return invalid(task, "Git context repository %q: cannot tell its host: write https://host/path, ssh://host/path or user@host:path", c.Git.Repository)
			}
			port := int32(ep.Port)
			if port == 0 {
				switch ep.Protocol {
				case "https":
					port = 443
				case "http":
					port = 80
				case "ssh":
					port = 22
				default:
					return invalid(task, "Git context repository %q: protocol %q cannot be allowed by network.egress: use https://, http:// or ssh://", c.Git.Repository, ep.Protocol)
				}
			}
			out = append(out, gitDest{repo: c.Git.Repository, host: strings.ToLower(strings.Trim(ep.Host, "[]")), port: port})
		}
		return nil
	}
	if err := add(agent.Spec.Contexts); err != nil {
		return nil, err
	}
	if err := add(task.Spec.Contexts); err != nil {
		return nil, err
	}
	return out, nil
}

// EgressHosts returns the host names the controller must resolve before it
// builds the Job of a Task whose Agent sets network.egress: the allow-list's
// hosts and the Git contexts' hosts that are not IP addresses, sorted and
// without repeats. Nil when the Agent does not set network.egress.
func EgressHosts(task *v1alpha1.Task, agent *v1alpha1.Agent) ([]string, error) {
	eg := egressOn(agent)
	if eg == nil {
		return nil, nil
	}
	var names []string
	for _, r := range eg.Allow {
		if r.Host != "" {
			names = append(names, r.Host)
		}
	}
	dests, err := gitDestinations(task, agent)
	if err != nil {
		return nil, err
	}
	for _, d := range dests {
		if _, err := netip.ParseAddr(d.host); err != nil {
			names = append(names, d.host)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// egressBuild is the egress part of a Task's objects.
type egressBuild struct {
	policy  *networkingv1.NetworkPolicy
	aliases []corev1.HostAlias
	check   *corev1.Container
	summary *EgressSummary
}

// protection decides which addresses a destination may not include.
type protection struct {
	api       []netip.AddrPort // empty when the Agent allows the API server
	allowMeta map[netip.Addr]bool
}

// cut says whether addr must be cut out of a destination that allows ports
// of protocol proto: a metadata address always (unless its exact /32 is
// listed), an API server address when one of the ports is its port.
func (p *protection) cut(addr netip.Addr, proto corev1.Protocol, ports []int32) (bool, string) {
	for _, m := range metadataAddrs {
		if addr == m && !p.allowMeta[m] {
			return true, "cloud metadata"
		}
	}
	if proto != corev1.ProtocolTCP {
		return false, ""
	}
	for _, a := range p.api {
		if a.Addr() == addr && slices.Contains(ports, int32(a.Port())) {
			return true, "Kubernetes API"
		}
	}
	return false, ""
}

// single is the /32 or /128 of addr.
func single(addr netip.Addr) string {
	return netip.PrefixFrom(addr, addr.BitLen()).String()
}

func policyPorts(proto corev1.Protocol, ports []int32) []networkingv1.NetworkPolicyPort {
	out := make([]networkingv1.NetworkPolicyPort, len(ports))
	for i, p := range ports {
		out[i] = networkingv1.NetworkPolicyPort{Protocol: ptr.To(proto), Port: ptr.To(intstr.FromInt32(p))}
	}
	return out
}

func portList(proto corev1.Protocol, ports []int32) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return string(proto) + " " + strings.Join(s, ",")
}

func addrList(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// buildEgress writes the NetworkPolicy, the /etc/hosts entries and the
// egress check of a Task whose Agent sets network.egress; nil when it does
// not. The policy selects the Task's pod only and allows, besides DNS to
// the cluster resolver, exactly the allow-list, the Git contexts' hosts and
// (when asked) the API server, with the metadata and API server addresses
// cut out of every range that would include them.
func (b *builder) buildEgress(jobName string, labels map[string]string, owner *metav1.OwnerReference) (*egressBuild, error) {
	task, agent := b.in.Task, b.in.Agent
	eg := egressOn(agent)
	if eg == nil {
		return nil, nil
	}
	in := b.in.Egress
	if in == nil {
		return nil, fmt.Errorf("Agent %s sets network.egress but the controller resolved no egress input", agent.Name)
	}
	bad := func(format string, args ...any) *Error {
		return &Error{Reason: v1alpha1.ReasonInvalidEgress, Message: fmt.Sprintf("Task %s/%s, Agent %s: ", task.Namespace, task.Name, agent.Name) + fmt.Sprintf(format, args...)}
	}
	prot := &protection{allowMeta: map[netip.Addr]bool{}}
	var api []netip.AddrPort
	for _, a := range in.API {
		if a.Addr().IsLoopback() || a.Addr().IsUnspecified() {
			continue // not where a pod reaches it
		}
		api = append(api, a)
	}
	if !eg.KubernetesAPI {
		prot.api = api
	}
	for _, r := range eg.Allow {
		if r.CIDR == "" {
			continue
		}
		if p, err := netip.ParsePrefix(r.CIDR); err == nil && p.IsSingleIP() && slices.Contains(metadataAddrs, p.Addr()) {
			prot.allowMeta[p.Addr()] = true
		}
	}

	var rules []networkingv1.NetworkPolicyEgressRule
	summary := &EgressSummary{}
	if eg.DNS != v1alpha1.EgressDNSNone {
		rules = append(rules, networkingv1.NetworkPolicyEgressRule{
			To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{
				{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))},
				{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(53))},
			},
		})
		summary.Allowed = append(summary.Allowed, "DNS to the cluster resolver (kube-system pods k8s-app=kube-dns) UDP,TCP 53")
	}

	pinned := map[string][]netip.Addr{}
	// hostRule allows the addresses name resolved to, less protected ones.
	// label starts its line in the summary; what names it in errors.
	hostRule := func(name string, proto corev1.Protocol, ports []int32, what, label string) error {
		addrs, ok := in.Hosts[name]
		if !ok || len(addrs) == 0 {
			return fmt.Errorf("host %q of Agent %s was not resolved", name, agent.Name)
		}
		var keep []netip.Addr
		var cut []string
		for _, a := range addrs {
			if c, why := prot.cut(a, proto, ports); c {
				cut = append(cut, a.String()+" ("+why+")")
				continue
			}
			keep = append(keep, a)
		}
		if len(keep) == 0 {
			return bad("%s %q resolves only to addresses network.egress never allows through a host name: %s. Allow the API server with kubernetesAPI: true, or a metadata address with its exact cidr (169.254.169.254/32)",
				what, name, strings.Join(cut, ", "))
		}
		peers := make([]networkingv1.NetworkPolicyPeer, len(keep))
		for i, a := range keep {
			peers[i] = networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: single(a)}}
		}
		rules = append(rules, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: policyPorts(proto, ports)})
		pinned[name] = keep
		summary.Allowed = append(summary.Allowed, fmt.Sprintf("%s%s (%s) %s", label, name, addrList(keep), portList(proto, ports)))
		return nil
	}

	for i, r := range eg.Allow {
		proto := r.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if r.Host != "" {
			if err := hostRule(r.Host, proto, r.Ports, fmt.Sprintf("network.egress.allow[%d].host", i), ""); err != nil {
				return nil, err
			}
			continue
		}
		p, err := netip.ParsePrefix(r.CIDR)
		if err != nil || p.Masked() != p {
			return nil, bad("network.egress.allow[%d].cidr %q is not a network in CIDR notation: write it as 10.20.0.0/16, or /32 for one address", i, r.CIDR)
		}
		var except []string
		for _, a := range append(slices.Clone(metadataAddrs), apiAddrs(prot.api)...) {
			if !p.Contains(a) {
				continue
			}
			c, why := prot.cut(a, proto, r.Ports)
			if !c {
				continue
			}
			if p.IsSingleIP() {
				return nil, bad("network.egress.allow[%d].cidr %s is the address of the %s on one of its ports: set network.egress.kubernetesAPI: true to allow the API server", i, r.CIDR, why)
			}
			if s := single(a); !slices.Contains(except, s) {
				except = append(except, s)
			}
		}
		rules = append(rules, networkingv1.NetworkPolicyEgressRule{
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: p.String(), Except: except}}},
			Ports: policyPorts(proto, r.Ports),
		})
		text := fmt.Sprintf("%s %s", p, portList(proto, r.Ports))
		if len(except) > 0 {
			text += " except " + strings.Join(except, ", ")
		}
		summary.Allowed = append(summary.Allowed, text)
	}

	dests, err := gitDestinations(task, agent)
	if err != nil {
		return nil, err
	}
	for _, d := range dests {
		if a, err := netip.ParseAddr(d.host); err == nil {
			if c, why := prot.cut(a, corev1.ProtocolTCP, []int32{d.port}); c {
				return nil, bad("Git context repository %q is on the address of the %s, which network.egress refuses", d.repo, why)
			}
			rules = append(rules, networkingv1.NetworkPolicyEgressRule{
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: single(a)}}},
				Ports: policyPorts(corev1.ProtocolTCP, []int32{d.port}),
			})
			summary.Allowed = append(summary.Allowed, fmt.Sprintf("Git %s (%s) TCP %d", d.repo, a, d.port))
			continue
		}
		if err := hostRule(d.host, corev1.ProtocolTCP, []int32{d.port}, "Git context repository host", "Git "+d.repo+": "); err != nil {
			return nil, err
		}
	}

	if eg.KubernetesAPI && len(api) > 0 {
		var peers []networkingv1.NetworkPolicyPeer
		var ports []int32
		var texts []string
		for _, a := range api {
			peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: single(a.Addr())}})
			if !slices.Contains(ports, int32(a.Port())) {
				ports = append(ports, int32(a.Port()))
			}
			texts = append(texts, a.String())
		}
		rules = append(rules, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: policyPorts(corev1.ProtocolTCP, ports)})
		summary.Allowed = append(summary.Allowed, "Kubernetes API "+strings.Join(texts, ", "))
	}

	resolution, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	policy := &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            EgressPolicyName(jobName),
			Namespace:       task.Namespace,
			Labels:          labels,
			Annotations:     map[string]string{AnnotationTaskName: task.Name, AnnotationAgentName: agent.Name, AnnotationEgressResolution: string(resolution)},
			OwnerReferences: []metav1.OwnerReference{*owner},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelTaskUID: string(task.UID)}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			// An empty list (not nil) is what default-deny is made of.
			Egress: append([]networkingv1.NetworkPolicyEgressRule{}, rules...),
		},
	}

	// The addresses the pod must find out of reach before anything else in
	// it runs: the API server (which always answers a pod that the policy
	// does not stop) and the metadata service (which may not exist here).
	plan := contract.EgressCheckPlan{Version: contract.Version, WaitSeconds: EgressCheckWaitSeconds}
	if !eg.KubernetesAPI {
		for i, a := range in.API {
			if !slices.Contains(api, a) {
				continue
			}
			what := "Kubernetes API endpoint"
			if i == 0 {
				what = "Kubernetes API"
			}
			plan.Targets = append(plan.Targets, contract.EgressProbe{Address: a.String(), What: what})
		}
	}
	summary.Verifiable = len(plan.Targets) > 0
	if !prot.allowMeta[metadataProbe.Addr()] {
		plan.Targets = append(plan.Targets, contract.EgressProbe{Address: metadataProbe.String(), What: "cloud metadata"})
	}
	var check *corev1.Container
	if len(plan.Targets) > 0 {
		planJSON, err := json.Marshal(plan)
		if err != nil {
			return nil, err
		}
		check = &corev1.Container{
			Name:                     EgressCheckContainer,
			Image:                    b.in.Images.ContextInit,
			ImagePullPolicy:          b.in.Images.PullPolicy,
			Args:                     []string{"--egress-check"},
			Env:                      []corev1.EnvVar{{Name: contract.EgressCheckEnv, Value: string(planJSON)}},
			SecurityContext:          initSecurityContext(),
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		}
	}
	return &egressBuild{policy: policy, aliases: hostAliases(pinned), check: check, summary: summary}, nil
}

func apiAddrs(api []netip.AddrPort) []netip.Addr {
	out := make([]netip.Addr, len(api))
	for i, a := range api {
		out[i] = a.Addr()
	}
	return out
}

// hostAliases pins each allowed name to the addresses the policy allows, so
// that the pod connects where it may even when the name's DNS answers
// change (CDNs rotate them) or DNS is not allowed at all.
func hostAliases(pinned map[string][]netip.Addr) []corev1.HostAlias {
	byAddr := map[netip.Addr][]string{}
	for name, addrs := range pinned {
		for _, a := range addrs {
			if !slices.Contains(byAddr[a], name) {
				byAddr[a] = append(byAddr[a], name)
			}
		}
	}
	addrs := make([]netip.Addr, 0, len(byAddr))
	for a := range byAddr {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(x, y netip.Addr) int { return x.Compare(y) })
	out := make([]corev1.HostAlias, len(addrs))
	for i, a := range addrs {
		names := byAddr[a]
		slices.Sort(names)
		out[i] = corev1.HostAlias{IP: a.String(), Hostnames: names}
	}
	return out
}

// EgressPolicyName is the name of a Task's NetworkPolicy.
func EgressPolicyName(jobName string) string {
	return jobName + "-egress"
}
