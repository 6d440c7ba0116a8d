package controller_test

// Benchmarks of the controller against the package's real API server. Each
// reports its figures with b.ReportMetric; docs/performance.md explains
// them, gives the targets and the command that reproduces them:
//
//	go test -run '^$' -bench . -benchtime 1x ./operator/internal/controller/
//
// Every benchmark does its work once, whatever b.N is: a burst of a
// thousand Tasks is the unit being measured, and repeating it in the same
// namespaces would measure something else.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
	"github.com/kubeopencode/kubeopencode/tools/deploy"
)

const (
	benchWorkers   = 16
	rawJobs        = 1000
	burstTasks     = 1000
	latencyTasks   = 300
	handOffTasks   = 200
	handOffLimit   = 5
	unrelatedEach  = 2000
	unrelatedBytes = 20 * 1024
	rssSamples     = 7
	benchWaitLimit = 3 * time.Minute
	rssSettle      = 10 * time.Second
	rssTasksBefore = 100
	rssTasksAfter  = 20
)

// BenchmarkJobCreateRaw measures how fast the API server accepts Jobs like
// the controller's from a client with the controller's rate limits and 16
// workers: the ceiling against which admission throughput is judged.
func BenchmarkJobCreateRaw(b *testing.B) {
	rate := measureRawJobRate(b)
	b.ReportMetric(rate, "jobs/s")
	b.ReportMetric(0, "ns/op")
}

func measureRawJobRate(b *testing.B) float64 {
	rate, _ := measureRawJobs(b)
	return rate
}

// measureRawJobs returns the raw rate and the server's CPU time per Job.
func measureRawJobs(b *testing.B) (rate, cpuMs float64) {
	return measureRawJobsIn(b, benchNamespace(b))
}

// measureRawJobsIn creates the raw Jobs in namespace ns.
func measureRawJobsIn(b *testing.B, ns string, edit ...func(*batchv1.Job)) (rate, cpuMs float64) {
	jobs := rawJobsFor(b, ns, edit...)
	cpu := serverCPU(b)
	rate = packageServer().createJobs(b, jobs)
	return rate, (serverCPU(b) - cpu) * 1000 / float64(len(jobs))
}

// rawJobsFor builds rawJobs Jobs for namespace ns as the controller would.
func rawJobsFor(b *testing.B, ns string, edit ...func(*batchv1.Job)) []*batchv1.Job {
	agent := newAgent(ns, v1alpha1.DefaultAgentName, nil)
	jobs := make([]*batchv1.Job, rawJobs)
	for i := range jobs {
		task := newTask(ns, fmt.Sprintf("raw-%04d", i))
		// Owner references need a UID; no garbage collector runs here.
		task.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
		out, err := jobbuilder.Build(jobbuilder.Input{
			Task: task, Agent: agent,
			Images: jobbuilder.Images{GitInit: gitInitImage, ContextInit: contextInitImage, PullPolicy: corev1.PullIfNotPresent},
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range edit {
			e(out.Job)
		}
		jobs[i] = out.Job
	}
	return jobs
}

// apiServer is an API server a benchmark talks to: the package's, or a
// second one a benchmark starts to compare against.
type apiServer struct {
	cfg *rest.Config
	c   client.Client
}

func packageServer() *apiServer { return &apiServer{cfg: restConfig, c: k8s} }

// createJobs creates the Jobs with 16 workers and returns how many were
// created per second.
func (s *apiServer) createJobs(b *testing.B, jobs []*batchv1.Job) float64 {
	// A client of its own with the rate limits the in-process controller
	// gets, so that only the API server limits the figure.
	c, err := client.New(rest.CopyConfig(s.cfg), client.Options{Scheme: controller.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	err = parallel(len(jobs), func(i int) error { return c.Create(context.Background(), jobs[i]) })
	elapsed := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	return float64(len(jobs)) / elapsed.Seconds()
}

// BenchmarkAdmissionBurst creates 1,000 Tasks at once for an Agent without a
// limit and measures how fast they become Running (which the controller
// records only once their Job exists), as seen by a watch.
func BenchmarkAdmissionBurst(b *testing.B) {
	// The machine's load drifts, so the raw rate it is compared with is
	// measured right before and right after the burst.
	rawBefore := measureRawJobRate(b)
	ns := benchNamespace(b)
	create(b, newAgent(ns, v1alpha1.DefaultAgentName, nil))
	stop := startWarmController(b)
	w := watchTasks(b, ns)

	names := taskNames("burst", burstTasks)
	writes := apiWrites(b)
	cpu := serverCPU(b)
	start := time.Now()
	created := createTasks(b, ns, names)
	createdAll := time.Since(start)
	w.waitFor(b, fmt.Sprintf("%d Tasks Running", len(names)), func() bool { return len(w.running) == len(names) })
	running := w.runningTimes()

	last := start
	for _, n := range names {
		if t := running[n]; t.After(last) {
			last = t
		}
	}
	cpu = serverCPU(b) - cpu
	writes = apiWrites(b) - writes
	requireJobs(b, ns, len(names))
	stop()
	raw := (rawBefore + measureRawJobRate(b)) / 2
	rate := float64(len(names)) / last.Sub(start).Seconds()
	lat := latencies(names, created, running)
	b.ReportMetric(rate, "tasks/s")
	b.ReportMetric(rate/raw, "ratio-to-raw")
	b.ReportMetric(raw, "raw-jobs/s")
	b.ReportMetric(float64(len(names))/createdAll.Seconds(), "creates/s")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	// Everything written to the API server during the burst, the Tasks
	// themselves included, per Task: the raw rate costs one write per Job.
	b.ReportMetric(writes/float64(len(names)), "api-writes/task")
	// The API server's and etcd's CPU time per Task over the same span.
	b.ReportMetric(cpu*1000/float64(len(names)), "server-cpu-ms/task")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkWriteCosts measures what each kind of write the admission of a
// Task involves costs the API server and etcd, in CPU time, on their own:
// 1,000 of each by 16 workers, as in BenchmarkJobCreateRaw. The Tasks' own
// creation, their Jobs and the status that records them Running are the
// three writes no controller can do without (the status write is the
// controller's own, SetRunning with an optimistic lock); floor-ratio is the ratio to the
// raw rate that those three alone would allow on a machine whose cores they
// keep busy, before any watch, event or controller work.
func BenchmarkWriteCosts(b *testing.B) {
	_, jobMs := measureRawJobs(b)
	ns := benchNamespace(b)
	tasks := make([]*v1alpha1.Task, rawJobs)
	taskMs := serverCPUPer(b, len(tasks), func(i int) error {
		tasks[i] = newTask(ns, fmt.Sprintf("cost-%04d", i))
		return k8s.Create(context.Background(), tasks[i])
	})
	images := v1alpha1.TaskImages{GitInit: gitInitImage, ContextInit: contextInitImage}
	statusMs := serverCPUPer(b, len(tasks), func(i int) error {
		t := tasks[i]
		patch := client.MergeFromWithOptions(t.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controller.SetRunning(t, t.Name, v1alpha1.DefaultAgentName, images)
		return k8s.Status().Patch(context.Background(), t, patch)
	})
	eventMs := serverCPUPer(b, len(tasks), func(i int) error {
		t := tasks[i]
		return k8s.Create(context.Background(), &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s.%d", t.Name, i)},
			EventTime:  metav1.NowMicro(), ReportingController: "kubeopencode-controller", ReportingInstance: "kubeopencode-controller-bench",
			Action: "CreateJob", Reason: "Started", Type: corev1.EventTypeNormal, Note: fmt.Sprintf("Created Job %s with Agent default", t.Name),
			Regarding: corev1.ObjectReference{Kind: "Task", APIVersion: v1alpha1.GroupVersion.String(), Namespace: ns, Name: t.Name, UID: t.UID},
		})
	})
	b.ReportMetric(jobMs, "job-cpu-ms")
	b.ReportMetric(taskMs, "task-cpu-ms")
	b.ReportMetric(statusMs, "status-cpu-ms")
	b.ReportMetric(eventMs, "event-cpu-ms")
	b.ReportMetric(jobMs/(taskMs+jobMs+statusMs), "floor-ratio")
	b.ReportMetric(0, "ns/op")
}

// serverCPUPer runs do(0..n-1) on 16 workers and returns the API server's
// and etcd's CPU milliseconds per call.
func serverCPUPer(b *testing.B, n int, do func(i int) error) float64 {
	cpu := serverCPU(b)
	if err := parallel(n, do); err != nil {
		b.Fatal(err)
	}
	return (serverCPU(b) - cpu) * 1000 / float64(n)
}

// serverCPU is the CPU time, in seconds, that the package's kube-apiserver
// and etcd (child processes of the test) have used so far.
func serverCPU(b *testing.B) float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	ticks := 0.0
	found := 0
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // not a process, or gone
		}
		// pid (comm) state ppid ... utime stime: comm may hold spaces.
		open, end := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
		if open < 0 || end < open {
			continue
		}
		comm := string(raw[open+1 : end])
		f := strings.Fields(string(raw[end+1:]))
		if (comm != "kube-apiserver" && comm != "etcd") || len(f) < 13 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		user, _ := strconv.ParseFloat(f[11], 64)
		sys, _ := strconv.ParseFloat(f[12], 64)
		ticks += user + sys
		found++
	}
	if found != 2 {
		b.Fatalf("found %d of the package's kube-apiserver and etcd processes in /proc", found)
	}
	return ticks / clockTicks
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// BenchmarkAdmissionLatency creates 300 Tasks at once and measures, per
// Task, the time from its create call returning to a watch seeing it Running.
func BenchmarkAdmissionLatency(b *testing.B) {
	ns := benchNamespace(b)
	create(b, newAgent(ns, v1alpha1.DefaultAgentName, nil))
	startWarmController(b)
	w := watchTasks(b, ns)

	names := taskNames("lat", latencyTasks)
	created := createTasks(b, ns, names)
	w.waitFor(b, fmt.Sprintf("%d Tasks Running", len(names)), func() bool { return len(w.running) == len(names) })
	requireJobs(b, ns, len(names))
	lat := latencies(names, created, w.runningTimes())
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(lat, 1), "max-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkQueueHandOff runs 200 Tasks through an Agent with
// maxConcurrentTasks 5 while the benchmark plays the Job controller and
// completes every Job the moment it appears. It reports over-admissions,
// FIFO violations and the hand-off latency from a Job's completion to the
// next queued Task's Job being created, all as seen by watches.
func BenchmarkQueueHandOff(b *testing.B) {
	ns := benchNamespace(b)
	create(b, newAgent(ns, v1alpha1.DefaultAgentName, ptr.To[int32](handOffLimit)))
	startWarmController(b)
	tasks := watchTasks(b, ns)
	jobs := watchJobs(b, ns)

	// Created one after the other, so creation order, creationTimestamp
	// order and name order agree and the expected queue order is exact.
	names := taskNames("q", handOffTasks)
	for _, n := range names {
		create(b, newTask(ns, n))
	}
	tasks.waitFor(b, "the limit's Tasks Running and the rest Queued", func() bool {
		// A controller that breaks the limit never gets there; it is
		// measured anyway, and reported as over-admitting.
		return tasks.phases[v1alpha1.TaskPhaseRunning] == handOffLimit && tasks.phases[v1alpha1.TaskPhaseQueued] == len(names)-handOffLimit ||
			tasks.maxRunning > handOffLimit
	})
	// From here on every Job completes as soon as it exists; the first
	// ones complete together.
	jobs.release()
	tasks.waitFor(b, fmt.Sprintf("%d Tasks Completed", len(names)), func() bool {
		return tasks.phases[v1alpha1.TaskPhaseCompleted] == len(names)
	})
	jobs.waitFor(b, "every Job's completion to be observed", func() bool { return jobs.completed == len(names) })

	jobs.mu.Lock()
	defer jobs.mu.Unlock()
	tasks.mu.Lock()
	defer tasks.mu.Unlock()
	if jobs.err != nil {
		b.Fatal(jobs.err)
	}
	over := max(jobs.maxActive, tasks.maxRunning) - handOffLimit

	// Replay the Job watch in the API server's order. When a Task's Job
	// appears while Tasks queued ahead of it still have none, those Tasks
	// must already hold or be owed a slot: more of them than the slots left
	// means the Task jumped the queue. Tasks admitted in the same round may
	// still create their Jobs in either order; those inversions are counted
	// apart.
	jumps, inversions, active := 0, 0, 0
	hasJob := map[string]bool{}
	var created, completed []time.Time
	for _, ev := range jobs.log {
		if ev.done {
			active--
			completed = append(completed, ev.at)
			continue
		}
		active++
		hasJob[ev.task] = true
		created = append(created, ev.at)
		ahead := 0
		for _, n := range names {
			if !hasJob[n] && queuedBefore(tasks.objs[n], tasks.objs[ev.task]) {
				ahead++
			}
		}
		if ahead > 0 {
			inversions++
		}
		if active+ahead > handOffLimit {
			jumps++
		}
	}

	// The k-th slot freed is taken by the (limit+k)-th Job. Both events come
	// from one watch, in the API server's order, so the difference is never
	// negative unless a Job was created without a free slot.
	var handOff []float64
	for k, done := range completed {
		if handOffLimit+k >= len(created) {
			break
		}
		handOff = append(handOff, max(0, float64(created[handOffLimit+k].Sub(done))/float64(time.Millisecond)))
	}
	b.ReportMetric(float64(max(over, 0)), "over-admissions")
	b.ReportMetric(float64(jumps), "fifo-violations")
	b.ReportMetric(float64(inversions), "start-order-inversions")
	b.ReportMetric(percentile(handOff, 0.50), "handoff-p50-ms")
	b.ReportMetric(percentile(handOff, 0.99), "handoff-p99-ms")
	// A hand-off is one write once the controller sees the Job finish (the
	// next Task's Job; its ConfigMap before it when its context needs one):
	// the API server's own write latency during the run puts the figures in
	// proportion.
	b.ReportMetric(percentile(jobs.rtt, 0.50), "api-write-p50-ms")
	b.ReportMetric(0, "ns/op")
}

// queuedBefore is the controller's queue order: creationTimestamp, then name.
func queuedBefore(a, b *v1alpha1.Task) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// BenchmarkControllerRSS runs the controller binary as users do and compares
// its resident memory before and after 6,000 objects it has no business with
// (ConfigMaps, Secrets, Jobs without its labels) appear in the cluster.
func BenchmarkControllerRSS(b *testing.B) {
	bin := buildController(b)
	kubeconfig := writeKubeconfig(b, restConfig)
	ns := benchNamespace(b)
	other := benchNamespace(b)
	create(b, newAgent(ns, v1alpha1.DefaultAgentName, nil))

	logFile, err := os.Create(filepath.Join(b.TempDir(), "controller.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--git-init-image="+gitInitImage, "--context-init-image="+contextInitImage,
		"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=:0")
	cmd.Env = append(userEnv(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		if b.Failed() {
			if log, err := os.ReadFile(logFile.Name()); err == nil {
				b.Logf("controller log (last 4 KiB):\n%s", log[max(0, len(log)-4096):])
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logFile.Close()
	})
	runTasks := func(prefix string, n int) {
		w := watchTasks(b, ns)
		defer w.stop()
		names := taskNames(prefix, n)
		createTasks(b, ns, names)
		w.waitFor(b, fmt.Sprintf("%d %s Tasks Running under the controller binary", n, prefix), func() bool {
			for _, name := range names {
				if _, ok := w.running[name]; !ok {
					return false
				}
			}
			return true
		})
	}

	runTasks("before", rssTasksBefore)
	before := settledRSS(b, cmd.Process.Pid)

	start := time.Now()
	payload := strings.Repeat("x", unrelatedBytes)
	err = parallel(3*unrelatedEach, func(i int) error {
		name := fmt.Sprintf("unrelated-%04d", i%unrelatedEach)
		var obj client.Object
		switch i / unrelatedEach {
		case 0:
			obj = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: name}, Data: map[string]string{"data": payload}}
		case 1:
			obj = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: name}, StringData: map[string]string{"data": payload}}
		default:
			obj = unrelatedJob(other, name)
		}
		return k8s.Create(context.Background(), obj)
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("created %d unrelated objects in %s", 3*unrelatedEach, time.Since(start).Round(time.Millisecond))
	runTasks("after", rssTasksAfter)
	after := settledRSS(b, cmd.Process.Pid)

	select {
	case err := <-exited:
		b.Fatalf("the controller exited during the benchmark: %v (log: %s)", err, logFile.Name())
	default:
	}
	b.ReportMetric(before/1024, "rss-before-MiB")
	b.ReportMetric(after/1024, "rss-after-MiB")
	b.ReportMetric((after-before)/before*100, "rss-delta-%")
	b.ReportMetric(0, "ns/op")
}

func unrelatedJob(ns, name string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "unrelated"}},
		Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name:    "work",
						Image:   "registry.example/unrelated/work@sha256:4444444444444444444444444444444444444444444444444444444444444444",
						Command: []string{"sh", "-c", "true"},
					}},
				},
			},
		},
	}
}

// buildController builds the controller binary as a release does (go build,
// default flags).
func buildController(b *testing.B) string {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "controller")
	if err := deploy.BuildControllerBinary(context.Background(), root, bin); err != nil {
		b.Fatal(err)
	}
	return bin
}

// userEnv is the benchmark's environment without the Go runtime settings a
// user of the binary would not have.
func userEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOGC", "GOMEMLIMIT", "GODEBUG", "GOMAXPROCS", "KUBECONFIG":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// writeKubeconfig writes the API server's admin credentials where the
// controller binary can read them.
func writeKubeconfig(b *testing.B, cfg *rest.Config) string {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{
		Server: cfg.Host, CertificateAuthorityData: cfg.CAData, CertificateAuthority: cfg.CAFile,
	}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientCertificate: cfg.CertFile,
		ClientKeyData: cfg.KeyData, ClientKey: cfg.KeyFile, Token: cfg.BearerToken,
	}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(b.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// settledRSS waits for the process to settle and returns the median of
// several VmRSS samples, in KiB.
func settledRSS(b *testing.B, pid int) float64 {
	time.Sleep(rssSettle)
	samples := make([]float64, 0, rssSamples)
	for range rssSamples {
		kb, err := vmRSS(pid)
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, kb)
		time.Sleep(time.Second)
	}
	return percentile(samples, 0.5)
}

func vmRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// benchNamespace is a fresh namespace whose Tasks, Jobs, ConfigMaps and
// Secrets are deleted when the benchmark ends (there is no namespace or
// garbage collector controller), so later benchmarks' controllers start
// on an empty cluster.
func benchNamespace(b *testing.B) string { return packageServer().benchNamespace(b) }

func (s *apiServer) benchNamespace(b *testing.B) string {
	ns := namespaceOn(b, s.c)
	b.Cleanup(func() {
		ctx := context.Background()
		for _, obj := range []client.Object{&v1alpha1.Task{}, &batchv1.Job{}, &corev1.ConfigMap{}, &corev1.Secret{}} {
			// Without a propagation policy Jobs would wait for the garbage
			// collector to orphan their pods, and none runs here.
			err := s.c.DeleteAllOf(ctx, obj, client.InNamespace(ns), client.PropagationPolicy(metav1.DeletePropagationBackground))
			if err != nil && !apierrors.IsNotFound(err) {
				b.Errorf("cleaning namespace %s: %v", ns, err)
			}
		}
	})
	return ns
}

// startWarmController starts the in-process controller and waits until it
// has started one Task, so the measurement does not include cache sync.
func startWarmController(b *testing.B) (stop func()) {
	stop = startController(b)
	ns := benchNamespace(b)
	create(b, newAgent(ns, v1alpha1.DefaultAgentName, nil), newTask(ns, "warm-up"))
	waitPhase(b, ns, "warm-up", v1alpha1.TaskPhaseRunning)
	return stop
}

func taskNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return names
}

// createTasks creates the Tasks with 16 workers and returns when each
// create call returned.
func createTasks(b *testing.B, ns string, names []string) map[string]time.Time {
	return packageServer().createTasks(b, ns, names)
}

func (s *apiServer) createTasks(b *testing.B, ns string, names []string) map[string]time.Time {
	var mu sync.Mutex
	created := make(map[string]time.Time, len(names))
	err := parallel(len(names), func(i int) error {
		if err := s.c.Create(context.Background(), newTask(ns, names[i])); err != nil {
			return err
		}
		now := time.Now()
		mu.Lock()
		created[names[i]] = now
		mu.Unlock()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return created
}

// parallel runs do(0..n-1) on 16 workers and returns the first error.
func parallel(n int, do func(i int) error) error {
	return parallelN(benchWorkers, n, do)
}

// parallelN runs do(0..n-1) on the given number of workers and returns the
// first error.
func parallelN(workers, n int, do func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var first error
			for i := range next {
				if err := do(i); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func requireJobs(b *testing.B, ns string, n int) {
	var jobs batchv1.JobList
	if err := k8s.List(context.Background(), &jobs, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	if len(jobs.Items) != n {
		b.Fatalf("namespace %s has %d Jobs, want one per Task (%d)", ns, len(jobs.Items), n)
	}
}

// apiWrites is how many writes the API server has served so far, from its
// own request counter.
func apiWrites(b *testing.B) float64 {
	cs, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, m := range families["apiserver_request_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "verb" {
				switch l.GetValue() {
				case "POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY":
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// latencies are the milliseconds from each create call returning to the
// Task being seen Running.
func latencies(names []string, created, running map[string]time.Time) []float64 {
	out := make([]float64, 0, len(names))
	for _, n := range names {
		out = append(out, max(0, float64(running[n].Sub(created[n]))/float64(time.Millisecond)))
	}
	return out
}

// percentile is the nearest-rank percentile of xs (p in 0..1).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// watcher runs a watch from the benchmark's own client and records what it
// sees, each event stamped with its arrival time.
type watcher struct {
	mu     sync.Mutex
	err    error
	cancel context.CancelFunc
}

func (w *watcher) stop() { w.cancel() }

// start watches list's kind in ns from now on. A watch the API server ends
// (it drops watchers that fall behind, which a loaded machine can cause) is
// resumed from the last event seen, so no event is lost.
func (w *watcher) start(b *testing.B, cfg *rest.Config, list client.ObjectList, ns string, handle func(watch.Event, time.Time)) {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: controller.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	b.Cleanup(cancel)
	if err := wc.List(ctx, list, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	lw := &toolscache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return wc.Watch(ctx, list.DeepCopyObject().(client.ObjectList), client.InNamespace(ns), &client.ListOptions{Raw: &o})
	}}
	wi, err := watchtools.NewRetryWatcherWithContext(ctx, list.GetResourceVersion(), lw)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for ev := range wi.ResultChan() {
			now := time.Now()
			w.mu.Lock()
			if ev.Type == watch.Error {
				w.err = fmt.Errorf("watch in %s: %v", ns, apierrors.FromObject(ev.Object))
			} else {
				handle(ev, now)
			}
			w.mu.Unlock()
		}
		w.mu.Lock()
		if ctx.Err() == nil && w.err == nil {
			w.err = fmt.Errorf("watch in %s ended", ns)
		}
		w.mu.Unlock()
	}()
}

// waitFor polls cond under the watcher's lock.
func (w *watcher) waitFor(b *testing.B, what string, cond func() bool) {
	deadline := time.Now().Add(benchWaitLimit)
	for {
		w.mu.Lock()
		ok, err := cond(), w.err
		w.mu.Unlock()
		if err != nil {
			b.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting for %s", benchWaitLimit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type taskWatch struct {
	watcher
	running    map[string]time.Time // first seen Running
	objs       map[string]*v1alpha1.Task
	phases     map[v1alpha1.TaskPhase]int
	maxRunning int
}

func (w *taskWatch) runningTimes() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.running)
}

func watchTasks(b *testing.B, ns string) *taskWatch { return packageServer().watchTasks(b, ns) }

func (s *apiServer) watchTasks(b *testing.B, ns string) *taskWatch {
	w := &taskWatch{running: map[string]time.Time{}, objs: map[string]*v1alpha1.Task{}, phases: map[v1alpha1.TaskPhase]int{}}
	w.start(b, s.cfg, &v1alpha1.TaskList{}, ns, func(ev watch.Event, at time.Time) {
		t := ev.Object.(*v1alpha1.Task)
		if old := w.objs[t.Name]; old != nil {
			w.phases[old.Status.Phase]--
		}
		if ev.Type == watch.Deleted {
			delete(w.objs, t.Name)
			return
		}
		w.objs[t.Name] = t
		w.phases[t.Status.Phase]++
		w.maxRunning = max(w.maxRunning, w.phases[v1alpha1.TaskPhaseRunning])
		if _, seen := w.running[t.Name]; !seen && t.Status.Phase == v1alpha1.TaskPhaseRunning {
			w.running[t.Name] = at
		}
	})
	return w
}

type jobEvent struct {
	task string
	at   time.Time
	done bool // the Job finished; otherwise it was created
}

// jobWatch plays the Job controller: once released, it marks every Job
// Complete the moment it appears.
type jobWatch struct {
	watcher
	log       []jobEvent // in the API server's order
	completed int
	active    int
	maxActive int
	released  bool
	pending   []*batchv1.Job
	finished  map[string]bool
	rtt       []float64 // milliseconds each completion's status update took
}

func watchJobs(b *testing.B, ns string) *jobWatch {
	w := &jobWatch{finished: map[string]bool{}}
	w.start(b, restConfig, &batchv1.JobList{}, ns, func(ev watch.Event, at time.Time) {
		j := ev.Object.(*batchv1.Job)
		switch ev.Type {
		case watch.Added:
			w.log = append(w.log, jobEvent{task: j.Annotations[jobbuilder.AnnotationTaskName], at: at})
			w.active++
			w.maxActive = max(w.maxActive, w.active)
			if w.released {
				go w.complete(j)
			} else {
				w.pending = append(w.pending, j)
			}
		case watch.Modified:
			if jobDone(j) && !w.finished[j.Name] {
				w.finished[j.Name] = true
				w.log = append(w.log, jobEvent{task: j.Annotations[jobbuilder.AnnotationTaskName], at: at, done: true})
				w.completed++
				w.active--
			}
		}
	})
	return w
}

func (w *jobWatch) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.released = true
	for _, j := range w.pending {
		go w.complete(j)
	}
	w.pending = nil
}

// complete marks the Job finished the way kube-controller-manager does.
func (w *jobWatch) complete(job *batchv1.Job) {
	ctx := context.Background()
	for {
		now := metav1.Now()
		job.Status.StartTime = &now
		job.Status.CompletionTime = &now
		job.Status.Succeeded = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: batchv1.JobReasonCompletionsReached},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: batchv1.JobReasonCompletionsReached},
		}
		t0 := time.Now()
		err := k8s.Status().Update(ctx, job)
		w.mu.Lock()
		w.rtt = append(w.rtt, float64(time.Since(t0))/float64(time.Millisecond))
		w.mu.Unlock()
		if apierrors.IsConflict(err) {
			key := client.ObjectKeyFromObject(job)
			job = &batchv1.Job{}
			if err = k8s.Get(ctx, key, job); err == nil {
				continue
			}
		}
		if err != nil {
			w.mu.Lock()
			w.err = fmt.Errorf("completing Job %s/%s: %w", job.Namespace, job.Name, err)
			w.mu.Unlock()
		}
		return
	}
}

func jobDone(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			return true
		}
	}
	return false
}
