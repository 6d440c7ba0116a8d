package realnode_test

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/internal/nettest"
)

// TestEgressIsolation runs the same agent twice, in parallel: once under an
// Agent with network.egress allowing only the model's host (and,
// implicitly, the Task's Git host), once under an Agent without it. The
// fenced pod clones from the Git server and reaches the model, by the names
// the controller resolved and pinned, and cannot reach another server on the
// same host, the API server through its Service address, or the metadata
// stand-in; the unfenced pod reaches all of them, so each refusal is the
// policy's doing, enforced by kube-router. The fenced Task records what its
// pod found refused, and both it and its Agent say EgressEnforced=True.
func TestEgressIsolation(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	ns := restrictedNamespace(t)
	gitSecrets(t, ns)

	bridge, err := bridgeAddress()
	require.NoError(t, err)
	// Pods reach a server on this host's lo through the bridge as they
	// would reach a real metadata service.
	nettest.AddLoopbackAddress(t, nettest.MetadataAddress)
	metadata := nettest.Serve(t, net.JoinHostPort(nettest.MetadataAddress, "80"))
	// Another server on the host the allowed ones run on: only the port
	// tells it apart.
	other := nettest.ServeOutsideNodePorts(t, bridge)

	modelURL, err := url.Parse(env.model.URL)
	require.NoError(t, err)
	modelPort := nettest.Port(t, modelURL.Host)
	model := net.JoinHostPort(modelHost, modelURL.Port())
	gitURL, err := url.Parse(env.git.httpURL)
	require.NoError(t, err)
	git := net.JoinHostPort(gitHost, gitURL.Port())
	gitURL.Host = git

	targets := map[string]string{
		"model":        model,
		"Git server":   git,
		"other server": other,
		"API Service":  env.cluster.APIServiceAddress,
		"metadata":     metadata,
		// The Git context is cloned over HTTP: its server's SSH port
		// is not allowed.
		"Git SSH server": env.git.sshAddr,
		"API endpoint":   env.cluster.APIServiceEndpoint,
	}
	if nettest.InNodePortRange(nettest.Port(t, env.git.sshAddr)) {
		// kube-router lets pods reach the node on NodePorts whatever
		// their policies say; the SSH server's port is the kernel's
		// choice and landed there.
		delete(targets, "Git SSH server")
	}
	var steps []string
	for _, addr := range targets {
		steps = append(steps, "dial="+addr)
	}
	steps = append(steps, "cat=src/README.md")

	fenced := echoAgent(ns, "fenced", steps...)
	fenced.Spec.Network = &v1alpha1.AgentNetwork{Egress: &v1alpha1.Egress{
		Allow: []v1alpha1.EgressRule{{Host: modelHost, Ports: []int32{int32(modelPort)}}},
	}}
	// The unfenced Agent reaches its servers by address: without
	// network.egress nothing pins the names in its pod.
	byAddress := strings.NewReplacer(modelHost, bridge, gitHost, bridge)
	var openSteps []string
	for _, s := range steps {
		openSteps = append(openSteps, byAddress.Replace(s))
	}
	create(t, fenced)
	create(t, echoAgent(ns, "open", openSteps...))

	srcContext := func(repo string) v1alpha1.ContextItem {
		return v1alpha1.ContextItem{Type: v1alpha1.ContextTypeGit, MountPath: "src", Git: &v1alpha1.GitContext{
			Repository: repo, SecretRef: &v1alpha1.LocalSecretReference{Name: "git-http"},
		}}
	}
	create(t, task(ns, "fenced", "fenced", "Fenced in.", srcContext(gitURL.String())))
	create(t, task(ns, "open", "open", "Not fenced in.", srcContext(env.git.httpURL)))

	open := waitEnded(t, ns, "open")
	requireCompleted(t, open)
	openOut := agentOutput(t, open)
	for what, addr := range targets {
		addr = byAddress.Replace(addr)
		assert.Equal(t, "ok", openOut.dials[addr], "without network.egress the pod reaches the %s at %s: the servers answer pods", what, addr)
	}
	assert.Nil(t, open.Status.Egress, "a Task of an Agent without network.egress has no egress status")
	assert.Nil(t, condition(open, v1alpha1.TaskConditionEgressEnforced))

	tk := waitEnded(t, ns, "fenced")
	requireCompleted(t, tk)
	out := agentOutput(t, tk)
	assert.Equal(t, env.git.Files["README.md"], out.cats["src/README.md"], "git-init cloned from the Git host by its name")
	for what, addr := range targets {
		want := "failed"
		if what == "model" || what == "Git server" {
			want = "ok"
		}
		assert.True(t, strings.HasPrefix(out.dials[addr], want), "the fenced pod dialling the %s at %s: want %s, got %q", what, addr, want, out.dials[addr])
	}

	// What the Task says about it.
	require.NotNil(t, tk.Status.Egress, describeTask(tk))
	assert.Equal(t, tk.Status.JobName+"-egress", tk.Status.Egress.NetworkPolicy)
	assert.Contains(t, tk.Status.Egress.Allowed, modelHost+" ("+bridge+") TCP "+modelURL.Port())
	assert.Contains(t, tk.Status.Egress.Allowed, "Git "+gitURL.String()+": "+gitHost+" ("+bridge+") TCP "+gitURL.Port())
	assert.Contains(t, tk.Status.Egress.Refused, env.cluster.APIServiceAddress+" (Kubernetes API)")
	assert.Contains(t, tk.Status.Egress.Refused, metadata+" (cloud metadata)")
	c := condition(tk, v1alpha1.TaskConditionEgressEnforced)
	require.NotNil(t, c, describeTask(tk))
	assert.Equal(t, metav1.ConditionTrue, c.Status, c.Message)
	assert.Equal(t, v1alpha1.ReasonEgressEnforced, c.Reason)

	// The policy is the Task's, and selects its pod alone.
	policy := &networkingv1.NetworkPolicy{}
	require.NoError(t, env.k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: tk.Status.Egress.NetworkPolicy}, policy))
	require.Len(t, policy.OwnerReferences, 1)
	assert.Equal(t, tk.UID, policy.OwnerReferences[0].UID)
	assert.Equal(t, string(tk.UID), policy.Spec.PodSelector.MatchLabels[labelTaskUID])

	// The Agent repeats the verdict where its owner looks.
	var agentCond *metav1.Condition
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		a := &v1alpha1.Agent{}
		if err := env.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fenced"}, a); err != nil {
			return false, err
		}
		agentCond = meta.FindStatusCondition(a.Status.Conditions, v1alpha1.AgentConditionEgressEnforced)
		return agentCond != nil && agentCond.Status == metav1.ConditionTrue, nil
	})
	require.NoError(t, err, "Agent fenced says EgressEnforced=True; has %+v", agentCond)
	assert.Equal(t, v1alpha1.ReasonEgressEnforced, agentCond.Reason)
}
