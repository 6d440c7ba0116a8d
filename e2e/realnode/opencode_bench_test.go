package realnode_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/internal/modelserver"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
)

// BenchmarkOpenCodeOverhead measures what KubeOpenCode adds before an agent
// starts working: the time from creating a Task to OpenCode's first request
// to the model, against the same time for a plain Job that runs the same
// image and launcher with the same environment, created directly (no
// controller, no init containers: a shell writes task.md, then execs the
// launcher). Task and Job alternate, one at a time, with the images on the
// node already; each reports p50 and p95, and the overhead is the
// difference of the medians. Because OpenCode's own start-up (many
// seconds of CPU on a busy machine) varies more than the overhead, the
// time from creation to the launcher's start (its first log line, same
// clock) is reported too: that is KubeOpenCode's share alone.
//
//	go test ./e2e/realnode -run '^$' -bench OpenCodeOverhead -benchtime 10x
func BenchmarkOpenCodeOverhead(b *testing.B) {
	if env.skip != "" {
		b.Skip(env.skip)
	}
	ctx := b.Context()
	ns := restrictedNamespace(b)
	const script = "bench-opencode-overhead"
	env.model.Handle(script, modelserver.Steps(modelserver.Reply{Text: "Done."}))
	agent := opencodeAgent(b, ns, script, nil)
	must(b, env.k8s.Create(ctx, agent))

	const prompt = "Benchmark: answer Done.\n"
	firstRequest := func(since time.Time) (time.Duration, error) {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		r, err := env.model.WaitRequest(wctx, script, func(r *modelserver.Request) bool {
			return len(r.Tools) > 0 && r.Turn == 0 && r.Received.After(since)
		})
		if err != nil {
			return 0, err
		}
		return r.Received.Sub(since), nil
	}
	// launched reads when the launcher started from its first line.
	launched := func(labels client.MatchingLabels, since time.Time) (time.Duration, error) {
		pods := &corev1.PodList{}
		if err := env.k8s.List(ctx, pods, client.InNamespace(ns), labels); err != nil || len(pods.Items) != 1 {
			return 0, fmt.Errorf("pods %v: %d, %v", labels, len(pods.Items), err)
		}
		out, err := env.cs.CoreV1().Pods(ns).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{Container: "agent"}).DoRaw(ctx)
		if err != nil {
			return 0, err
		}
		line, _, _ := strings.Cut(string(out), "\n")
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(line, launcherStarted))
		if err != nil {
			return 0, fmt.Errorf("the agent's first line %q: %w", line, err)
		}
		return at.Sub(since), nil
	}
	var tasksStarted, jobsStarted []time.Duration
	runTask := func(name string) (time.Duration, error) {
		start := time.Now()
		if err := env.k8s.Create(ctx, task(ns, name, "", prompt)); err != nil {
			return 0, err
		}
		d, err := firstRequest(start)
		if err != nil {
			return 0, err
		}
		tk := &v1alpha1.Task{}
		if err := env.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, tk); err != nil {
			return 0, err
		}
		s, err := launched(client.MatchingLabels{labelTaskUID: string(tk.UID)}, start)
		if err != nil {
			return 0, err
		}
		tasksStarted = append(tasksStarted, s)
		return d, deploy.Poll(ctx, 2*time.Minute, func() (bool, error) {
			tk := &v1alpha1.Task{}
			if err := env.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, tk); err != nil {
				return false, err
			}
			if tk.Status.Phase == v1alpha1.TaskPhaseFailed {
				return false, fmt.Errorf("Task %s failed: %s", name, describeTask(tk))
			}
			return tk.Status.Phase == v1alpha1.TaskPhaseCompleted, nil
		})
	}
	runJob := func(name string) (time.Duration, error) {
		job := rawJob(ns, name, agent, prompt)
		start := time.Now()
		if err := env.k8s.Create(ctx, job); err != nil {
			return 0, err
		}
		d, err := firstRequest(start)
		if err != nil {
			return 0, err
		}
		s, err := launched(client.MatchingLabels{"job-name": name}, start)
		if err != nil {
			return 0, err
		}
		jobsStarted = append(jobsStarted, s)
		return d, deploy.Poll(ctx, 2*time.Minute, func() (bool, error) {
			j := &batchv1.Job{}
			if err := env.k8s.Get(ctx, client.ObjectKeyFromObject(job), j); err != nil {
				return false, err
			}
			if j.Status.Failed > 0 {
				return false, fmt.Errorf("Job %s failed", name)
			}
			return j.Status.Succeeded > 0, nil
		})
	}
	// Pull the image and warm the node outside the timing.
	if _, err := runTask("warm-task"); err != nil {
		b.Fatal(err)
	}
	if _, err := runJob("warm-job"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	tasksStarted, jobsStarted = nil, nil
	var tasks, jobs []time.Duration
	for i := range b.N {
		d, err := runTask(fmt.Sprintf("task-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		tasks = append(tasks, d)
		if d, err = runJob(fmt.Sprintf("job-%d", i)); err != nil {
			b.Fatal(err)
		}
		jobs = append(jobs, d)
	}
	b.StopTimer()
	tp50, tp95 := percentiles(tasks)
	jp50, jp95 := percentiles(jobs)
	b.ReportMetric(tp50.Seconds(), "task-p50-s")
	b.ReportMetric(tp95.Seconds(), "task-p95-s")
	b.ReportMetric(jp50.Seconds(), "job-p50-s")
	b.ReportMetric(jp95.Seconds(), "job-p95-s")
	b.ReportMetric((tp50 - jp50).Seconds(), "overhead-p50-s")
	b.ReportMetric((tp95 - jp95).Seconds(), "overhead-p95-s")
	ts50, ts95 := percentiles(tasksStarted)
	js50, js95 := percentiles(jobsStarted)
	b.ReportMetric(ts50.Seconds(), "task-start-p50-s")
	b.ReportMetric(ts95.Seconds(), "task-start-p95-s")
	b.ReportMetric(js50.Seconds(), "job-start-p50-s")
	b.ReportMetric(js95.Seconds(), "job-start-p95-s")
	b.ReportMetric((ts50 - js50).Seconds(), "start-overhead-p50-s")
	b.ReportMetric((ts95 - js95).Seconds(), "start-overhead-p95-s")
	b.Logf("creation to the launcher's start over %d runs: Task p50 %s p95 %s; plain Job p50 %s p95 %s", b.N, ts50, ts95, js50, js95)
	b.Logf("creation to first model request over %d runs: Task p50 %s p95 %s; plain Job p50 %s p95 %s", b.N, tp50, tp95, jp50, jp95)
}

// rawJob runs the agent's image and launcher as a plain Job, with what the
// Task's pod would give it: the Agent's environment and credential, an
// emptyDir workspace and /tmp, the restricted security context.
func rawJob(ns, name string, agent *v1alpha1.Agent, prompt string) *batchv1.Job {
	envs := append([]corev1.EnvVar{
		{Name: "WORKSPACE_DIR", Value: "/workspace"},
		{Name: "TASK_FILE", Value: "/workspace/task.md"},
		{Name: "PROMPT", Value: prompt},
	}, agent.Spec.Env...)
	for _, c := range agent.Spec.Credentials {
		envs = append(envs, corev1.EnvVar{Name: c.Env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: c.SecretRef.Name}, Key: c.SecretRef.Key,
		}}})
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy:      corev1.RestartPolicyNever,
				ServiceAccountName: agent.Spec.ServiceAccountName,
				EnableServiceLinks: ptr.To(false),
				SecurityContext: &corev1.PodSecurityContext{
					RunAsNonRoot: ptr.To(true), FSGroup: ptr.To[int64](65532),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				Containers: []corev1.Container{{
					Name:       "agent",
					Image:      agent.Spec.AgentImage,
					Command:    []string{"/bin/sh", "-c", `printf '%s' "$PROMPT" > "$TASK_FILE" && exec ` + agent.Spec.Command[0]},
					WorkingDir: "/workspace",
					Env:        envs,
					VolumeMounts: []corev1.VolumeMount{
						{Name: "tmp", MountPath: "/tmp"},
						{Name: "workspace", MountPath: "/workspace"},
					},
					SecurityContext: &corev1.SecurityContext{
						RunAsNonRoot: ptr.To(true), ReadOnlyRootFilesystem: ptr.To(true),
						AllowPrivilegeEscalation: ptr.To(false),
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
				}},
				Volumes: []corev1.Volume{
					{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				},
			}},
		},
	}
}

// percentiles returns the p50 and p95 of ds (nearest rank).
func percentiles(ds []time.Duration) (time.Duration, time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	return rank(0.50), rank(0.95)
}

// launcherStarted is the agent-opencode launcher's first line, before the
// time it started.
const launcherStarted = "agent-opencode: started at "

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
