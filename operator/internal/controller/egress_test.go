package controller_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// hostsTable stands in for DNS: the names it knows and their addresses.
// The API server and everything else in these tests are real.
type hostsTable struct {
	mu      sync.Mutex
	names   map[string][]netip.Addr
	lookups map[string]int // how often each name was looked up
}

func (h *hostsTable) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lookups == nil {
		h.lookups = map[string]int{}
	}
	h.lookups[host]++
	if a, ok := h.names[host]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host", host)
}

func (h *hostsTable) set(name string, addrs ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	h.names[name] = out
}

func (h *hostsTable) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lookups[name]
}

func egressAgentObj(ns, name string, eg v1alpha1.Egress) *v1alpha1.Agent {
	a := newAgent(ns, name, nil)
	a.Spec.Network = &v1alpha1.AgentNetwork{Egress: &eg}
	return a
}

// kubernetesService is where this API server's kubernetes Service says it is.
func kubernetesService(t *testing.T) (service netip.AddrPort) {
	t.Helper()
	svc := &corev1.Service{}
	require.NoError(t, k8s.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "kubernetes"}, svc))
	return netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), uint16(svc.Spec.Ports[0].Port))
}

func getPolicy(t *testing.T, ns, name string) (*networkingv1.NetworkPolicy, bool) {
	t.Helper()
	p := &networkingv1.NetworkPolicy{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, p); err != nil {
		return nil, false
	}
	return p, true
}

func agentCondition(t *testing.T, ns, name, typ string) *metav1.Condition {
	t.Helper()
	a := &v1alpha1.Agent{}
	require.NoError(t, k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, a))
	return meta.FindStatusCondition(a.Status.Conditions, typ)
}

func TestEgressPolicyBeforeJob(t *testing.T) {
	hosts := &hostsTable{names: map[string][]netip.Addr{}}
	hosts.set("git.example.test", "203.0.113.10")
	startController(t, func(o *controller.Options) { o.HostResolver = hosts })
	ns := namespace(t)
	api := kubernetesService(t)

	create(t, egressAgentObj(ns, "fenced", v1alpha1.Egress{Allow: []v1alpha1.EgressRule{
		{Host: "model.example.test", Ports: []int32{8443}},
		{CIDR: "0.0.0.0/0", Ports: []int32{int32(api.Port())}},
	}}))
	eventually(t, 10*time.Second, "the Agent to say no Task has checked yet", func() bool {
		c := agentCondition(t, ns, "fenced", v1alpha1.AgentConditionEgressEnforced)
		return c != nil && c.Reason == v1alpha1.ReasonEgressNotChecked
	})

	task := newTask(ns, "fix")
	task.Spec.AgentRef = "fenced"
	task.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeGit, MountPath: "/workspace/app", Git: &v1alpha1.GitContext{Repository: "https://git.example.test/acme/app.git"}}}
	create(t, task)

	// model.example.test does not resolve: the Task waits and says why,
	// with no Job and no policy that leaves the name out.
	var ready *metav1.Condition
	eventually(t, 10*time.Second, "the Task to wait for the host name", func() bool {
		ready = condition(getTask(t, ns, "fix"), v1alpha1.TaskConditionReady)
		return ready != nil && ready.Reason == v1alpha1.ReasonEgressUnresolved
	})
	assert.Equal(t, metav1.ConditionFalse, ready.Status)
	assert.Contains(t, ready.Message, `Agent fenced network.egress: host "model.example.test" does not resolve`)
	assert.Contains(t, ready.Message, "nothing is allowed in its place")
	assert.Equal(t, v1alpha1.TaskPhasePending, getTask(t, ns, "fix").Status.Phase)
	_, ok := getJob(t, ns, "fix")
	assert.False(t, ok, "no Job while a name is unresolved")
	_, ok = getPolicy(t, ns, "fix-egress")
	assert.False(t, ok)

	hosts.set("model.example.test", "198.51.100.7", "198.51.100.8")
	got := waitPhase(t, ns, "fix", v1alpha1.TaskPhaseRunning)
	policy, ok := getPolicy(t, ns, "fix-egress")
	require.True(t, ok, "the Task's NetworkPolicy exists")
	job, ok := getJob(t, ns, "fix")
	require.True(t, ok)
	prv, _ := strconv.ParseInt(policy.ResourceVersion, 10, 64)
	jrv, _ := strconv.ParseInt(job.ResourceVersion, 10, 64)
	assert.Less(t, prv, jrv, "the policy was written before the Job (etcd revisions)")
	assert.True(t, metav1.IsControlledBy(policy, got), "the Task owns its policy, so it goes with the Task")
	assert.Equal(t, map[string]string{jobbuilder.LabelTaskUID: string(got.UID)}, policy.Spec.PodSelector.MatchLabels)
	assert.Equal(t, got.UID, types.UID(job.Spec.Template.Labels[jobbuilder.LabelTaskUID]), "the pod carries the label the policy selects")

	pod := job.Spec.Template.Spec
	assert.Equal(t, jobbuilder.EgressCheckContainer, pod.InitContainers[0].Name)
	assert.ElementsMatch(t, []corev1.HostAlias{
		{IP: "198.51.100.7", Hostnames: []string{"model.example.test"}},
		{IP: "198.51.100.8", Hostnames: []string{"model.example.test"}},
		{IP: "203.0.113.10", Hostnames: []string{"git.example.test"}},
	}, pod.HostAliases)

	require.NotNil(t, got.Status.Egress)
	assert.Equal(t, "fix-egress", got.Status.Egress.NetworkPolicy)
	assert.Contains(t, got.Status.Egress.Allowed, fmt.Sprintf("model.example.test (198.51.100.7, 198.51.100.8) TCP 8443"))
	assert.Contains(t, got.Status.Egress.Allowed, "Git https://git.example.test/acme/app.git: git.example.test (203.0.113.10) TCP 443")
	// The API Service's address is cut out of 0.0.0.0/0 on its own port.
	assert.Contains(t, got.Status.Egress.Allowed, fmt.Sprintf("0.0.0.0/0 TCP %d except 169.254.169.254/32, 100.100.100.200/32, %s/32", api.Port(), api.Addr()))
	c := condition(got, v1alpha1.TaskConditionEgressEnforced)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionUnknown, c.Status)
	assert.Equal(t, v1alpha1.ReasonEgressNotChecked, c.Reason)

	// The pod found everything refused: the Task and the Agent say so.
	refused := fmt.Sprintf(`{"refused":["%s (Kubernetes API)","169.254.169.254:80 (cloud metadata)"]}`, api)
	podFor(t, ns, "fix", corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: []corev1.ContainerStatus{
		{Name: jobbuilder.EgressCheckContainer, State: terminated(0, "Completed", refused)},
		{Name: "context-init", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
	}})
	eventually(t, 10*time.Second, "the Task to record the check", func() bool {
		c = condition(getTask(t, ns, "fix"), v1alpha1.TaskConditionEgressEnforced)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	assert.Equal(t, v1alpha1.ReasonEgressEnforced, c.Reason)
	assert.Contains(t, c.Message, "could not reach "+api.String()+" (Kubernetes API), 169.254.169.254:80 (cloud metadata)")
	assert.Equal(t, []string{api.String() + " (Kubernetes API)", "169.254.169.254:80 (cloud metadata)"}, getTask(t, ns, "fix").Status.Egress.Refused)
	eventually(t, 10*time.Second, "the Agent to say its policy is enforced", func() bool {
		c := agentCondition(t, ns, "fenced", v1alpha1.AgentConditionEgressEnforced)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == v1alpha1.ReasonEgressEnforced
	})

	// A finished Task keeps its egress record.
	finishJob(t, ns, "fix", true, "")
	done := waitPhase(t, ns, "fix", v1alpha1.TaskPhaseCompleted)
	assert.Equal(t, metav1.ConditionTrue, condition(done, v1alpha1.TaskConditionEgressEnforced).Status)
	assert.Len(t, done.Status.Egress.Refused, 2)
}

// A Task queued behind an Agent's limit looks no name up until it may
// start; one whose name does not resolve once admitted gives its slot to
// the next Task rather than holding it while it waits.
func TestEgressQueuedTasksResolveWhenAdmitted(t *testing.T) {
	hosts := &hostsTable{names: map[string][]netip.Addr{}}
	hosts.set("model.example.test", "198.51.100.7")
	startController(t, func(o *controller.Options) { o.HostResolver = hosts })
	ns := namespace(t)
	agent := egressAgentObj(ns, "fenced", v1alpha1.Egress{Allow: []v1alpha1.EgressRule{{Host: "model.example.test", Ports: []int32{443}}}})
	agent.Spec.MaxConcurrentTasks = ptr.To[int32](1)
	create(t, agent)

	first := newTask(ns, "first")
	first.Spec.AgentRef = "fenced"
	create(t, first)
	waitPhase(t, ns, "first", v1alpha1.TaskPhaseRunning)
	assert.Equal(t, 1, hosts.count("model.example.test"), "the admitted Task looked its name up")

	// Behind it: one whose Git host does not resolve, then one that would run.
	unresolved := newTask(ns, "second")
	unresolved.Spec.AgentRef = "fenced"
	unresolved.Spec.Contexts = []v1alpha1.ContextItem{{Type: v1alpha1.ContextTypeGit, MountPath: "/workspace/app", Git: &v1alpha1.GitContext{Repository: "https://git.gone.test/acme/app.git"}}}
	create(t, unresolved)
	waitPhase(t, ns, "second", v1alpha1.TaskPhaseQueued)
	time.Sleep(time.Second) // CreationTimestamp has one-second resolution: keep the order
	third := newTask(ns, "third")
	third.Spec.AgentRef = "fenced"
	create(t, third)
	waitPhase(t, ns, "third", v1alpha1.TaskPhaseQueued)
	for i := range 3 {
		tk := getTask(t, ns, "third")
		tk.Annotations = map[string]string{"touch": strconv.Itoa(i)}
		require.NoError(t, k8s.Update(context.Background(), tk))
	}
	time.Sleep(time.Second)
	assert.Equal(t, 1, hosts.count("model.example.test"), "queued Tasks looked nothing up")
	assert.Zero(t, hosts.count("git.gone.test"))

	// The slot frees: the second Task is admitted, cannot resolve its Git
	// host and waits Pending, looking it up again without a slot; the third
	// takes the slot.
	finishJob(t, ns, "first", true, "")
	waitPhase(t, ns, "first", v1alpha1.TaskPhaseCompleted)
	running := waitPhase(t, ns, "third", v1alpha1.TaskPhaseRunning)
	assert.Equal(t, []string{"DNS to the cluster resolver (kube-system pods k8s-app=kube-dns) UDP,TCP 53", "model.example.test (198.51.100.7) TCP 443"}, running.Status.Egress.Allowed)
	eventually(t, 10*time.Second, "the second Task to look its Git host up again while it waits", func() bool { return hosts.count("git.gone.test") >= 2 })
	waiting := getTask(t, ns, "second")
	ready := condition(waiting, v1alpha1.TaskConditionReady)
	require.NotNil(t, ready, "%+v", waiting.Status)
	assert.Equal(t, v1alpha1.ReasonEgressUnresolved, ready.Reason)
	assert.Contains(t, ready.Message, `host "git.gone.test" does not resolve`)
	assert.Equal(t, v1alpha1.TaskPhasePending, waiting.Status.Phase, "it waits for its name, not in the queue")
	_, ok := getJob(t, ns, "second")
	assert.False(t, ok)

	// Once it resolves, the Task queues again for a slot and starts when
	// the third ends.
	hosts.set("git.gone.test", "203.0.113.20")
	waitPhase(t, ns, "second", v1alpha1.TaskPhaseQueued)
	finishJob(t, ns, "third", true, "")
	started := waitPhase(t, ns, "second", v1alpha1.TaskPhaseRunning)
	assert.Contains(t, started.Status.Egress.Allowed, "Git https://git.gone.test/acme/app.git: git.gone.test (203.0.113.20) TCP 443")
}

func TestEgressNotEnforcedFailsTheTaskAndWarnsOnTheAgent(t *testing.T) {
	startController(t, func(o *controller.Options) { o.HostResolver = &hostsTable{names: map[string][]netip.Addr{}} })
	ns := namespace(t)
	api := kubernetesService(t)
	create(t, egressAgentObj(ns, "fenced", v1alpha1.Egress{}))
	task := newTask(ns, "leaky")
	task.Spec.AgentRef = "fenced"
	create(t, task)
	running := waitPhase(t, ns, "leaky", v1alpha1.TaskPhaseRunning)
	assert.Empty(t, running.Status.Egress.Allowed[1:], "default deny: DNS only")

	msg := fmt.Sprintf(`{"error":"egress isolation is not enforced: the pod can connect to %s (Kubernetes API), although its NetworkPolicy refuses it (docs/network.md)","reachable":["%s (Kubernetes API)"],"refused":["169.254.169.254:80 (cloud metadata)"]}`, api, api)
	podFor(t, ns, "leaky", corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: []corev1.ContainerStatus{
		{Name: jobbuilder.EgressCheckContainer, State: terminated(1, "Error", msg)},
	}})
	finishJob(t, ns, "leaky", false, batchv1.JobReasonBackoffLimitExceeded)
	failed := waitPhase(t, ns, "leaky", v1alpha1.TaskPhaseFailed)
	s := condition(failed, v1alpha1.TaskConditionSucceeded)
	assert.Equal(t, v1alpha1.ReasonEgressNotEnforced, s.Reason)
	assert.Contains(t, s.Message, "The agent was not started: egress isolation is not enforced: the pod can connect to "+api.String()+" (Kubernetes API)")
	e := condition(failed, v1alpha1.TaskConditionEgressEnforced)
	require.NotNil(t, e)
	assert.Equal(t, metav1.ConditionFalse, e.Status)
	assert.Equal(t, v1alpha1.ReasonEgressNotEnforced, e.Reason)
	assert.Equal(t, []string{"169.254.169.254:80 (cloud metadata)"}, failed.Status.Egress.Refused)

	var ac *metav1.Condition
	eventually(t, 10*time.Second, "the Agent to warn", func() bool {
		ac = agentCondition(t, ns, "fenced", v1alpha1.AgentConditionEgressEnforced)
		return ac != nil && ac.Status == metav1.ConditionFalse
	})
	assert.Equal(t, v1alpha1.ReasonEgressNotEnforced, ac.Reason)
	assert.Contains(t, ac.Message, "Task leaky failed: its NetworkPolicy was not enforced")
	assert.Contains(t, ac.Message, "does not enforce NetworkPolicy")
	// The Agent's own recount keeps the warning.
	a := &v1alpha1.Agent{}
	require.NoError(t, k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "fenced"}, a))
	a.Spec.MaxConcurrentTasks = ptr.To[int32](3)
	require.NoError(t, k8s.Update(context.Background(), a))
	time.Sleep(time.Second)
	assert.Equal(t, metav1.ConditionFalse, agentCondition(t, ns, "fenced", v1alpha1.AgentConditionEgressEnforced).Status)
}

// A check container that ends well without its report (as on kwok, whose
// containers never run) proves nothing: the Task does not claim its
// policy is enforced, and neither does the Agent.
func TestEgressCheckWithoutReportClaimsNothing(t *testing.T) {
	startController(t, func(o *controller.Options) { o.HostResolver = &hostsTable{names: map[string][]netip.Addr{}} })
	ns := namespace(t)
	create(t, egressAgentObj(ns, "fenced", v1alpha1.Egress{}))
	task := newTask(ns, "simulated")
	task.Spec.AgentRef = "fenced"
	create(t, task)
	waitPhase(t, ns, "simulated", v1alpha1.TaskPhaseRunning)
	podFor(t, ns, "simulated", corev1.PodStatus{Phase: corev1.PodSucceeded, InitContainerStatuses: []corev1.ContainerStatus{
		{Name: jobbuilder.EgressCheckContainer, State: terminated(0, "Completed", "")},
		{Name: "context-init", State: terminated(0, "Completed", "")},
	}})
	finishJob(t, ns, "simulated", true, "")
	done := waitPhase(t, ns, "simulated", v1alpha1.TaskPhaseCompleted)
	c := condition(done, v1alpha1.TaskConditionEgressEnforced)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionUnknown, c.Status, c.Message)
	assert.Equal(t, v1alpha1.ReasonEgressNotChecked, c.Reason)
	assert.Empty(t, done.Status.Egress.Refused)
	ac := agentCondition(t, ns, "fenced", v1alpha1.AgentConditionEgressEnforced)
	require.NotNil(t, ac)
	assert.Equal(t, metav1.ConditionUnknown, ac.Status, ac.Message)
}

func TestEgressAPIAllowedIsNotVerifiable(t *testing.T) {
	startController(t, func(o *controller.Options) { o.HostResolver = &hostsTable{names: map[string][]netip.Addr{}} })
	ns := namespace(t)
	api := kubernetesService(t)
	create(t, egressAgentObj(ns, "kubectl", v1alpha1.Egress{KubernetesAPI: true}))
	task := newTask(ns, "t")
	task.Spec.AgentRef = "kubectl"
	create(t, task)
	got := waitPhase(t, ns, "t", v1alpha1.TaskPhaseRunning)
	c := condition(got, v1alpha1.TaskConditionEgressEnforced)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionUnknown, c.Status)
	assert.Equal(t, v1alpha1.ReasonEgressNotVerifiable, c.Reason)
	assert.Contains(t, got.Status.Egress.Allowed[len(got.Status.Egress.Allowed)-1], "Kubernetes API "+api.String())

	podFor(t, ns, "t", corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: []corev1.ContainerStatus{
		{Name: jobbuilder.EgressCheckContainer, State: terminated(0, "Completed", `{"refused":["169.254.169.254:80 (cloud metadata)"]}`)},
	}})
	eventually(t, 10*time.Second, "the refused metadata address on the Task", func() bool {
		return len(getTask(t, ns, "t").Status.Egress.Refused) == 1
	})
	c = condition(getTask(t, ns, "t"), v1alpha1.TaskConditionEgressEnforced)
	assert.Equal(t, metav1.ConditionUnknown, c.Status, "a refused metadata address proves nothing: it may not exist here")
	eventually(t, 10*time.Second, "the Agent to say it cannot tell", func() bool {
		c := agentCondition(t, ns, "kubectl", v1alpha1.AgentConditionEgressEnforced)
		return c != nil && c.Reason == v1alpha1.ReasonEgressNotVerifiable
	})
}

func TestEgressInvalidForTheCluster(t *testing.T) {
	startController(t, func(o *controller.Options) { o.HostResolver = &hostsTable{names: map[string][]netip.Addr{}} })
	ns := namespace(t)
	api := kubernetesService(t)
	create(t, egressAgentObj(ns, "bad", v1alpha1.Egress{Allow: []v1alpha1.EgressRule{{CIDR: api.Addr().String() + "/32", Ports: []int32{int32(api.Port())}}}}))
	task := newTask(ns, "t")
	task.Spec.AgentRef = "bad"
	create(t, task)
	failed := waitPhase(t, ns, "t", v1alpha1.TaskPhaseFailed)
	c := condition(failed, v1alpha1.TaskConditionReady)
	assert.Equal(t, v1alpha1.ReasonInvalidEgress, c.Reason)
	assert.Contains(t, c.Message, "network.egress.allow[0].cidr "+api.Addr().String()+"/32 is the address of the Kubernetes API on one of its ports: set network.egress.kubernetesAPI: true")
	_, ok := getPolicy(t, ns, "t-egress")
	assert.False(t, ok)
}

func terminated(code int32, reason, message string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: message}}
}

// A policy the Task already owns (a start that was cut off after writing
// it) decides what the Job pins, even when DNS now answers otherwise.
func TestEgressRetryKeepsTheRecordedResolution(t *testing.T) {
	hosts := &hostsTable{names: map[string][]netip.Addr{}}
	hosts.set("model.example.test", "198.51.100.99")
	startController(t, func(o *controller.Options) { o.HostResolver = hosts })
	ns := namespace(t)
	task := newTask(ns, "again")
	task.Spec.AgentRef = "fenced"
	create(t, task) // waits: the Agent does not exist yet
	waitCond := func() bool {
		c := condition(getTask(t, ns, "again"), v1alpha1.TaskConditionReady)
		return c != nil && c.Reason == v1alpha1.ReasonAgentNotFound
	}
	eventually(t, 10*time.Second, "the Task to wait for its Agent", waitCond)
	got := getTask(t, ns, "again")
	api := kubernetesService(t)
	recorded := fmt.Sprintf(`{"hosts":{"model.example.test":["198.51.100.7"]},"api":["%s"]}`, api)
	create(t, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "again-egress", Namespace: ns,
			Annotations:     map[string]string{jobbuilder.AnnotationEgressResolution: recorded},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(got, v1alpha1.GroupVersion.WithKind("Task"))}},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
	})
	create(t, egressAgentObj(ns, "fenced", v1alpha1.Egress{Allow: []v1alpha1.EgressRule{{Host: "model.example.test", Ports: []int32{8443}}}}))
	running := waitPhase(t, ns, "again", v1alpha1.TaskPhaseRunning)
	job, ok := getJob(t, ns, "again")
	require.True(t, ok)
	assert.Equal(t, []corev1.HostAlias{{IP: "198.51.100.7", Hostnames: []string{"model.example.test"}}}, job.Spec.Template.Spec.HostAliases,
		"the Job pins what the existing policy was written from")
	assert.Contains(t, running.Status.Egress.Allowed, "model.example.test (198.51.100.7) TCP 8443")
}
