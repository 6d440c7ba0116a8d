package realnode_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
)

// labelTaskUID ties a Job and its pods to their Task (set by the controller).
const labelTaskUID = "kubeopencode.io/task-uid"

// agentSA is the ServiceAccount every test's Agent runs its pods as.
const agentSA = "echo-agent"

// restrictedNamespace creates a namespace that enforces the PodSecurity
// "restricted" profile, with the Agents' ServiceAccount.
func restrictedNamespace(t testing.TB) string {
	t.Helper()
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "e2e-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-",
		Labels:       map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}
	if len(ns.GenerateName) > 40 {
		ns.GenerateName = ns.GenerateName[:39] + "-"
	}
	require.NoError(t, env.k8s.Create(ctx, ns))
	require.NoError(t, env.k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: agentSA, Namespace: ns.Name}}))
	return ns.Name
}

// echoAgent is an Agent that runs the echo agent with the given steps.
func echoAgent(ns, name string, steps ...string) *v1alpha1.Agent {
	return &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.AgentSpec{
			AgentImage:         env.echoImage,
			Command:            []string{echoBinary},
			Args:               steps,
			ServiceAccountName: agentSA,
		},
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	require.NoError(t, env.k8s.Create(t.Context(), obj), "creating %T %s/%s", obj, obj.GetNamespace(), obj.GetName())
}

func task(ns, name, agent, description string, contexts ...v1alpha1.ContextItem) *v1alpha1.Task {
	return &v1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1alpha1.TaskSpec{AgentRef: agent, Description: &description, Contexts: contexts},
	}
}

func getTask(t *testing.T, ns, name string) *v1alpha1.Task {
	t.Helper()
	tk := &v1alpha1.Task{}
	require.NoError(t, env.k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, tk))
	return tk
}

// waitTask waits until cond holds for the Task and returns it.
func waitTask(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*v1alpha1.Task) bool) *v1alpha1.Task {
	t.Helper()
	var tk *v1alpha1.Task
	err := deploy.Poll(t.Context(), timeout, func() (bool, error) {
		tk = &v1alpha1.Task{}
		if err := env.k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, tk); err != nil {
			return false, err
		}
		return cond(tk), nil
	})
	require.NoError(t, err, "Task %s/%s: waiting for %s; status now: %s", ns, name, what, describeTask(tk))
	return tk
}

// waitEnded waits for the Task to reach Completed or Failed.
func waitEnded(t *testing.T, ns, name string) *v1alpha1.Task {
	t.Helper()
	return waitTask(t, ns, name, 3*time.Minute, "Completed or Failed", func(tk *v1alpha1.Task) bool { return tk.Status.Phase.IsTerminal() })
}

// requireCompleted asserts the Task completed and shows why when it did not.
func requireCompleted(t *testing.T, tk *v1alpha1.Task) {
	t.Helper()
	require.Equal(t, v1alpha1.TaskPhaseCompleted, tk.Status.Phase, "Task %s: %s\nagent output:\n%s", tk.Name, describeTask(tk), agentLogsOrError(t, tk))
}

func describeTask(tk *v1alpha1.Task) string {
	if tk == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %q job %q", tk.Status.Phase, tk.Status.JobName)
	if tk.Status.ExitCode != nil {
		fmt.Fprintf(&b, " exitCode %d", *tk.Status.ExitCode)
	}
	for _, c := range tk.Status.Conditions {
		fmt.Fprintf(&b, "; %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func condition(tk *v1alpha1.Task, typ string) *metav1.Condition {
	return meta.FindStatusCondition(tk.Status.Conditions, typ)
}

// taskPods lists the pods of the Task's Job.
func taskPods(t *testing.T, tk *v1alpha1.Task) []corev1.Pod {
	t.Helper()
	pods := &corev1.PodList{}
	require.NoError(t, env.k8s.List(t.Context(), pods, client.InNamespace(tk.Namespace), client.MatchingLabels{labelTaskUID: string(tk.UID)}))
	return pods.Items
}

// taskPod returns the one pod of the Task.
func taskPod(t *testing.T, tk *v1alpha1.Task) *corev1.Pod {
	t.Helper()
	pods := taskPods(t, tk)
	require.Len(t, pods, 1, "pods of Task %s/%s", tk.Namespace, tk.Name)
	return &pods[0]
}

func containerLogs(t *testing.T, pod *corev1.Pod, container string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := env.cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	require.NoError(t, err, "logs of %s/%s container %s", pod.Namespace, pod.Name, container)
	return string(out)
}

// agentOutput reads what the echo agent printed, through the pod logs API.
func agentOutput(t *testing.T, tk *v1alpha1.Task) *echoOutput {
	t.Helper()
	return parseEcho(containerLogs(t, taskPod(t, tk), "agent"))
}

func agentLogsOrError(t *testing.T, tk *v1alpha1.Task) string {
	pods := &corev1.PodList{}
	if err := env.k8s.List(t.Context(), pods, client.InNamespace(tk.Namespace), client.MatchingLabels{labelTaskUID: string(tk.UID)}); err != nil || len(pods.Items) == 0 {
		return fmt.Sprintf("<no pod: %v>", err)
	}
	var b strings.Builder
	p := pods.Items[0]
	for _, s := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		out, err := env.cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: s.Name}).DoRaw(t.Context())
		fmt.Fprintf(&b, "--- %s (%+v) %v\n%s", s.Name, s.State, err, out)
	}
	return b.String()
}

// echoOutput is what the echo agent printed.
type echoOutput struct {
	raw   string
	id    string            // "uid=.. gid=.. groups=[..]"
	stats map[string]string // path -> "MODE UID:GID SIZE[ -> TARGET]"
	cats  map[string]string // path -> content
	envs  map[string]string // name -> value; absent when unset
	dials map[string]string // HOST:PORT -> "ok" or "failed: ERROR"
	// appended lists the files appended to, in order.
	appended []string
	// start and finish are the agent's clock readings (Unix ns) when it
	// began and when it ran out of steps.
	start, finish int64
}

func parseEcho(raw string) *echoOutput {
	o := &echoOutput{raw: raw, stats: map[string]string{}, cats: map[string]string{}, envs: map[string]string{}, dials: map[string]string{}}
	lines := strings.SplitAfter(raw, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSuffix(lines[i], "\n")
		rest, ok := strings.CutPrefix(line, "== ")
		if !ok {
			continue
		}
		verb, arg, _ := strings.Cut(rest, " ")
		switch verb {
		case "id":
			o.id = arg
		case "stat":
			p, v, _ := strings.Cut(arg, " ")
			o.stats[p] = v
		case "cat":
			var b strings.Builder
			for i++; i < len(lines) && lines[i] != "== end "+arg+"\n"; i++ {
				b.WriteString(lines[i])
			}
			o.cats[arg] = b.String()
		case "env":
			if k, v, ok := strings.Cut(arg, "="); ok {
				o.envs[k] = v
			}
		case "dial":
			addr, result, _ := strings.Cut(arg, " ")
			o.dials[addr] = result
		case "appended":
			o.appended = append(o.appended, arg)
		case "start":
			o.start, _ = strconv.ParseInt(arg, 10, 64)
		case "finish":
			o.finish, _ = strconv.ParseInt(arg, 10, 64)
		}
	}
	return o
}

// jobGone reports whether the Task's Job no longer exists.
func jobGone(t *testing.T, ns, name string) bool {
	err := env.k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &batchv1.Job{})
	return client.IgnoreNotFound(err) == nil && err != nil
}

// waitAgentStarted waits until the Task's agent container runs and has
// printed its first line, so that what follows meets a live process.
func waitAgentStarted(t *testing.T, tk *v1alpha1.Task) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := deploy.Poll(t.Context(), 2*time.Minute, func() (bool, error) {
		pods := taskPods(t, tk)
		if len(pods) != 1 {
			return false, fmt.Errorf("%d pods", len(pods))
		}
		pod = &pods[0]
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name == "agent" && s.State.Running != nil {
				out, err := env.cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "agent"}).DoRaw(t.Context())
				return err == nil && strings.Contains(string(out), "== start "), err
			}
		}
		return false, fmt.Errorf("pod phase %s", pod.Status.Phase)
	})
	require.NoError(t, err, "agent of Task %s/%s did not start: %s", tk.Namespace, tk.Name, describeTask(getTask(t, tk.Namespace, tk.Name)))
	return pod
}
