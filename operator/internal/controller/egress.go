package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;create
// The kubernetes Service and its EndpointSlices in namespace default are
// read through a Role of their own (manifests/controller/rbac.yaml).

// HostResolver looks host names up; *net.Resolver is one.
type HostResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Knobs of the egress lookups.
const (
	// hostLookupTimeout bounds one host name's lookup.
	hostLookupTimeout = 5 * time.Second
	// apiAddressesTTL is how long the API server's addresses are reused.
	apiAddressesTTL = time.Minute
)

// egressLookup finds what a Task's NetworkPolicy is written from: the
// addresses of the allow-list's host names (looked up for every Task, so
// that each pins what the name means when it starts) and the API server's
// addresses (cached for apiAddressesTTL).
type egressLookup struct {
	resolver HostResolver
	reader   client.Reader

	mu    sync.Mutex
	api   []netip.AddrPort
	apiAt time.Time
}

// resolve looks up every name, all of them or nothing: a name that does not
// resolve is reported, never left out of the policy in silence.
func (e *egressLookup) resolve(ctx context.Context, names []string) (map[string][]netip.Addr, error) {
	out := make(map[string][]netip.Addr, len(names))
	for _, name := range names {
		lctx, cancel := context.WithTimeout(ctx, hostLookupTimeout)
		addrs, err := e.resolver.LookupNetIP(lctx, "ip", name)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("host %q does not resolve: %v", name, err)
		}
		seen := map[netip.Addr]bool{}
		var keep []netip.Addr
		for _, a := range addrs {
			a = a.Unmap()
			if !seen[a] {
				seen[a] = true
				keep = append(keep, a)
			}
		}
		if len(keep) == 0 {
			return nil, fmt.Errorf("host %q resolves to no address", name)
		}
		slices.SortFunc(keep, func(x, y netip.Addr) int { return x.Compare(y) })
		out[name] = keep
	}
	return out, nil
}

// apiAddresses returns where pods reach the API server: the kubernetes
// Service's addresses and port, then its endpoints.
func (e *egressLookup) apiAddresses(ctx context.Context) ([]netip.AddrPort, error) {
	e.mu.Lock()
	if e.api != nil && time.Since(e.apiAt) < apiAddressesTTL {
		api := e.api
		e.mu.Unlock()
		return api, nil
	}
	e.mu.Unlock()

	svc := &corev1.Service{}
	if err := e.reader.Get(ctx, types.NamespacedName{Namespace: metav1.NamespaceDefault, Name: "kubernetes"}, svc); err != nil {
		return nil, fmt.Errorf("reading Service default/kubernetes: %w", err)
	}
	var api []netip.AddrPort
	add := func(ip string, port int32) {
		a, err := netip.ParseAddr(ip)
		if err != nil || port <= 0 {
			return
		}
		ap := netip.AddrPortFrom(a.Unmap(), uint16(port))
		if !slices.Contains(api, ap) {
			api = append(api, ap)
		}
	}
	svcPort := int32(443)
	for _, p := range svc.Spec.Ports {
		if p.Name == "https" || len(svc.Spec.Ports) == 1 {
			svcPort = p.Port
		}
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		add(ip, svcPort)
	}
	eps := &discoveryv1.EndpointSliceList{}
	if err := e.reader.List(ctx, eps, client.InNamespace(metav1.NamespaceDefault), client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}); err != nil {
		return nil, fmt.Errorf("listing the EndpointSlices of Service default/kubernetes: %w", err)
	}
	for _, s := range eps.Items {
		port := int32(0)
		for _, p := range s.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "https" || len(s.Ports) == 1) {
				port = *p.Port
			}
		}
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				add(a, port)
			}
		}
	}
	if len(api) == 0 {
		return nil, fmt.Errorf("Service default/kubernetes has no address")
	}
	e.mu.Lock()
	e.api, e.apiAt = api, time.Now()
	e.mu.Unlock()
	return api, nil
}

// unresolvedHost stands in for every host name's address while a Task is
// checked before admission (egressInput without lookup): TEST-NET-1
// (RFC 5737), never written into a policy.
var unresolvedHost = netip.MustParseAddr("192.0.2.1")

// egressInput works out the EgressInput of a Task whose Agent sets
// network.egress. A lookup that fails makes the Task wait (EgressUnresolved).
// Without lookup the host names get unresolvedHost: enough to check
// everything but their addresses, for a Task not yet admitted, whose names
// are looked up once it may start, so that it pins what they mean then and a
// queued Task costs no DNS lookups.
func (r *TaskReconciler) egressInput(ctx context.Context, task *v1alpha1.Task, agent *v1alpha1.Agent, lookup bool) (*jobbuilder.EgressInput, *waitReason, error) {
	if agent.Spec.Network == nil || agent.Spec.Network.Egress == nil {
		return nil, nil, nil
	}
	names, err := jobbuilder.EgressHosts(task, agent)
	if err != nil {
		return nil, nil, err
	}
	hosts := make(map[string][]netip.Addr, len(names))
	if lookup {
		if hosts, err = r.egress.resolve(ctx, names); err != nil {
			return nil, &waitReason{v1alpha1.ReasonEgressUnresolved, fmt.Sprintf(
				"Agent %s network.egress: %v. The Task waits until it resolves: nothing is allowed in its place. Check the name in network.egress.allow or the Git context's repository, and the controller's DNS.",
				agent.Name, err)}, nil
		}
	} else {
		for _, n := range names {
			hosts[n] = []netip.Addr{unresolvedHost}
		}
	}
	api, err := r.egress.apiAddresses(ctx)
	if err != nil {
		return nil, &waitReason{v1alpha1.ReasonEgressUnresolved, fmt.Sprintf(
			"Agent %s network.egress: the API server's addresses cannot be read, so the policy cannot refuse them: %v. The Task waits.", agent.Name, err)}, nil
	}
	return &jobbuilder.EgressInput{Hosts: hosts, API: api}, nil, nil
}

// createPolicy creates the Task's NetworkPolicy. A policy the Task already
// owns, from an earlier attempt to start it, wins: the Job must pin the
// addresses that policy allows, so when its recorded resolution differs the
// Task's objects are built again from it.
func (r *TaskReconciler) createPolicy(ctx context.Context, task *v1alpha1.Task, in jobbuilder.Input, out *jobbuilder.Output) (*jobbuilder.Output, error) {
	err := r.Client.Create(ctx, out.NetworkPolicy)
	if err == nil || !apierrors.IsAlreadyExists(err) {
		return out, err
	}
	existing := &networkingv1.NetworkPolicy{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(out.NetworkPolicy), existing); err != nil {
		return nil, err
	}
	if !metav1.IsControlledBy(existing, task) {
		return nil, &ownerConflict{kind: "NetworkPolicy", name: existing.Name}
	}
	recorded := existing.Annotations[jobbuilder.AnnotationEgressResolution]
	if recorded == out.NetworkPolicy.Annotations[jobbuilder.AnnotationEgressResolution] {
		return out, nil
	}
	var egress jobbuilder.EgressInput
	if err := json.Unmarshal([]byte(recorded), &egress); err != nil {
		return nil, fmt.Errorf("NetworkPolicy %s/%s: annotation %s: %w", existing.Namespace, existing.Name, jobbuilder.AnnotationEgressResolution, err)
	}
	in.Egress = &egress
	return jobbuilder.Build(in)
}

// egressStarting is what a Task records about its egress isolation when its
// Job is created.
func egressStarting(out *jobbuilder.Output) (*v1alpha1.TaskEgressStatus, *metav1.Condition) {
	if out.NetworkPolicy == nil {
		return nil, nil
	}
	st := &v1alpha1.TaskEgressStatus{NetworkPolicy: out.NetworkPolicy.Name, Allowed: out.Egress.Allowed}
	c := &metav1.Condition{Type: v1alpha1.TaskConditionEgressEnforced, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonEgressNotChecked,
		Message: fmt.Sprintf("NetworkPolicy %s fences the pod in; the pod checks that it is enforced before anything else in it runs.", st.NetworkPolicy)}
	if !out.Egress.Verifiable {
		c.Reason = v1alpha1.ReasonEgressNotVerifiable
		c.Message = fmt.Sprintf("NetworkPolicy %s fences the pod in, but the allow-list admits the Kubernetes API, the one address sure to answer an unfenced pod: whether the cluster's network plugin enforces the policy cannot be told from inside the pod (docs/network.md).", st.NetworkPolicy)
	}
	return st, c
}

// egressVerdict reads the pod's egress check: ok is false until it has
// ended. refused is what it found out of reach.
func egressVerdict(pod *corev1.Pod) (enforced bool, refused []string, message string, ok bool) {
	if pod == nil {
		return false, nil, "", false
	}
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name != jobbuilder.EgressCheckContainer || s.State.Terminated == nil {
			continue
		}
		t := s.State.Terminated
		var res contract.Result
		_ = json.Unmarshal([]byte(strings.TrimSpace(t.Message)), &res)
		if t.ExitCode == 0 {
			if len(res.Refused) == 0 {
				// No report (a simulated node's container, a check
				// image that is not ours): nothing was proven.
				return false, nil, "", false
			}
			return true, res.Refused, "", true
		}
		if len(res.Reachable) == 0 {
			return false, nil, "", false // failed for another reason: InitFailed says which
		}
		return false, res.Refused, res.Error, true
	}
	return false, nil, "", false
}

// applyEgressVerdict records the pod's egress check on the Task (status and
// condition); it reports whether anything changed.
func applyEgressVerdict(task *v1alpha1.Task, pod *corev1.Pod) bool {
	if task.Status.Egress == nil {
		return false
	}
	c := meta.FindStatusCondition(task.Status.Conditions, v1alpha1.TaskConditionEgressEnforced)
	if c == nil || c.Reason != v1alpha1.ReasonEgressNotChecked && c.Reason != v1alpha1.ReasonEgressNotVerifiable {
		return false // no check expected, or recorded already
	}
	enforced, refused, msg, ok := egressVerdict(pod)
	if !ok {
		return false
	}
	if len(refused) > 0 && !slices.Equal(task.Status.Egress.Refused, refused) {
		task.Status.Egress.Refused = refused
	}
	switch {
	case !enforced:
		setCondition(task, v1alpha1.TaskConditionEgressEnforced, metav1.ConditionFalse, v1alpha1.ReasonEgressNotEnforced, msg)
	case c.Reason == v1alpha1.ReasonEgressNotChecked:
		setCondition(task, v1alpha1.TaskConditionEgressEnforced, metav1.ConditionTrue, v1alpha1.ReasonEgressEnforced,
			fmt.Sprintf("Before anything else in the pod ran, it could not reach %s.", strings.Join(refused, ", ")))
	default:
		// NotVerifiable stays: the refused addresses are in status.egress.
		if len(refused) == 0 {
			return false
		}
	}
	return true
}

// noteAgentEgress repeats a Task's egress verdict on its Agent, so that an
// Agent whose cluster does not enforce NetworkPolicy says so where its
// owner looks.
func (r *TaskReconciler) noteAgentEgress(ctx context.Context, task *v1alpha1.Task) error {
	c := meta.FindStatusCondition(task.Status.Conditions, v1alpha1.TaskConditionEgressEnforced)
	if c == nil || c.Reason == v1alpha1.ReasonEgressNotChecked {
		return nil
	}
	agent := &v1alpha1.Agent{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: task.Namespace, Name: task.Status.Agent}, agent); err != nil {
		return client.IgnoreNotFound(err)
	}
	want := metav1.Condition{Type: v1alpha1.AgentConditionEgressEnforced, Status: c.Status, Reason: c.Reason, ObservedGeneration: agent.Generation,
		Message: fmt.Sprintf("Task %s: %s", task.Name, c.Message)}
	if c.Status == metav1.ConditionFalse {
		want.Message = fmt.Sprintf("Task %s failed: its NetworkPolicy was not enforced (%s). The cluster's network plugin does not enforce NetworkPolicy: this Agent's Tasks fail until it does (docs/network.md).", task.Name, c.Message)
	}
	if old := meta.FindStatusCondition(agent.Status.Conditions, want.Type); old != nil && old.Status == want.Status && old.Reason == want.Reason {
		return nil // unchanged: one write per change, not per Task
	}
	patch := client.MergeFromWithOptions(agent.DeepCopy(), client.MergeFromWithOptimisticLock{})
	meta.SetStatusCondition(&agent.Status.Conditions, want)
	err := r.Client.Status().Patch(ctx, agent, patch)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// agentEgressCondition is the EgressEnforced condition an Agent starts
// with, nil when it does not set network.egress.
func agentEgressCondition(agent *v1alpha1.Agent) *metav1.Condition {
	if agent.Spec.Network == nil || agent.Spec.Network.Egress == nil {
		return nil
	}
	return &metav1.Condition{Type: v1alpha1.AgentConditionEgressEnforced, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonEgressNotChecked,
		ObservedGeneration: agent.Generation,
		Message:            "No Task of this Agent has checked yet whether the cluster enforces its NetworkPolicy."}
}
