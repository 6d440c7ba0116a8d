package controller_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
	"github.com/kubeopencode/kubeopencode/operator/internal/images"
	"github.com/kubeopencode/kubeopencode/tools/cluster/envtest"
)

const (
	gitInitImage     = "registry.example/kubeopencode/git-init@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	contextInitImage = "registry.example/kubeopencode/context-init@sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// crdDir holds the CRDs every API server of the package gets.
var crdDir = filepath.Join("..", "..", "..", "manifests", "crd")

var (
	restConfig *rest.Config
	k8s        client.Client
	nsCounter  atomic.Int32
)

// TestMain runs one real API server for the package; each test works in
// namespaces of its own and starts the controller it needs.
func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.UseDevMode(false), zap.Level(zapcore.Level(zapLevel()))))
	cfg, stop, err := envtest.Start(context.Background(), os.Stderr, crdDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	restConfig = cfg
	restConfig.QPS, restConfig.Burst = 500, 1000
	k8s, err = client.New(cfg, client.Options{Scheme: controller.Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = stop()
	os.Exit(code)
}

func zapLevel() int8 {
	if os.Getenv("KUBEOPENCODE_TEST_LOG") != "" {
		return -1
	}
	return 10 // quiet
}

// startController runs the controller until the test ends or the returned
// function is called.
func startController(t testing.TB, mutate ...func(*controller.Options)) (stop func()) {
	t.Helper()
	opts := controller.Options{
		Images:          images.Images{GitInit: gitInitImage, ContextInit: contextInitImage},
		Version:         "v0.0.0-test",
		Workers:         16,
		MetricsAddr:     "0",
		ProbeAddr:       "0",
		StuckPodTimeout: 2 * time.Second,
		StartupTimeout:  3 * time.Second,
		// Each test starts a manager of its own in this one process.
		SkipNameValidation: true,
	}
	for _, m := range mutate {
		m(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := controller.NewManager(ctx, restConfig, opts)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("controller stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("controller did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func namespace(t testing.TB) string {
	t.Helper()
	return namespaceOn(t, k8s)
}

// namespaceOn creates a fresh namespace through c.
func namespaceOn(t testing.TB, c client.Client) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", nsCounter.Add(1), time.Now().UnixNano()%100000)
	require.NoError(t, c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	// Pods need their ServiceAccount to exist; no controller-manager creates it here.
	require.NoError(t, c.Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: name}}))
	return name
}

func newAgent(ns, name string, limit *int32) *v1alpha1.Agent {
	return &v1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.AgentSpec{
			AgentImage:         "registry.example/agents/echo@sha256:3333333333333333333333333333333333333333333333333333333333333333",
			Command:            []string{"sh", "-c", "cat $TASK_FILE"},
			ServiceAccountName: "agent",
			MaxConcurrentTasks: limit,
		},
	}
}

func newTask(ns, name string) *v1alpha1.Task {
	return &v1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1alpha1.TaskSpec{Description: ptr.To("Do the thing.")},
	}
}

func create(t testing.TB, objs ...client.Object) {
	t.Helper()
	createOn(t, k8s, objs...)
}

func createOn(t testing.TB, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		require.NoError(t, c.Create(context.Background(), o))
	}
}

func getTask(t testing.TB, ns, name string) *v1alpha1.Task {
	t.Helper()
	task := &v1alpha1.Task{}
	require.NoError(t, k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, task))
	return task
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitPhase(t testing.TB, ns, name string, phase v1alpha1.TaskPhase) *v1alpha1.Task {
	t.Helper()
	var task *v1alpha1.Task
	eventually(t, 20*time.Second, fmt.Sprintf("Task %s/%s to reach %s", ns, name, phase), func() bool {
		task = getTask(t, ns, name)
		return task.Status.Phase == phase
	})
	return task
}

func condition(task *v1alpha1.Task, typ string) *metav1.Condition {
	return meta.FindStatusCondition(task.Status.Conditions, typ)
}

func getJob(t testing.TB, ns, name string) (*batchv1.Job, bool) {
	t.Helper()
	job := &batchv1.Job{}
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, job)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	require.NoError(t, err)
	return job, true
}

// finishJob plays the Job controller: it marks the Job complete or failed
// the way kube-controller-manager does.
func finishJob(t testing.TB, ns, name string, succeeded bool, reason string) {
	t.Helper()
	job, ok := getJob(t, ns, name)
	require.True(t, ok, "Job %s/%s exists", ns, name)
	now := metav1.Now()
	job.Status.StartTime = &now
	if succeeded {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &now
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: batchv1.JobReasonCompletionsReached},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: batchv1.JobReasonCompletionsReached},
		}
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: reason},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: reason},
		}
	}
	require.NoError(t, k8s.Status().Update(context.Background(), job))
}

// podFor plays the Job controller and kubelet: it creates the Job's pod from
// the template and gives it the status the test needs.
func podFor(t testing.TB, ns, jobName string, status corev1.PodStatus) {
	t.Helper()
	job, ok := getJob(t, ns, jobName)
	require.True(t, ok)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: jobName + "-abcde", Namespace: ns,
			Labels: job.Spec.Template.Labels, Annotations: job.Spec.Template.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: job.Spec.Template.Spec,
	}
	require.NoError(t, k8s.Create(context.Background(), pod))
	pod.Status = status
	require.NoError(t, k8s.Status().Update(context.Background(), pod))
}
