package lifecycle_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// Environment variables that tune the fault test.
const (
	// envSeed replays the kill schedule of an earlier run (its log names
	// the seed).
	envSeed = "KUBEOPENCODE_FAULT_SEED"
	// envTasks changes the size of the burst (default 500).
	envTasks = "KUBEOPENCODE_FAULT_TASKS"
)

// Short leader election timings, so that a new controller takes over about
// two seconds after the old one was killed without releasing its Lease.
var shortLease = []string{
	"--leader-election-lease-duration=2s",
	"--leader-election-renew-deadline=1500ms",
	"--leader-election-retry-period=250ms",
}

// TestControllerKilledDuringBurst runs a burst of Tasks on an Agent that
// runs five at a time while the controller is killed with SIGKILL at random
// moments and restarted, each new process taking over the Lease the dead one
// never released. At no moment may more than five Jobs be active or a Task
// have a second Job, and in the end every Task must be Completed.
func TestControllerKilledDuringBurst(t *testing.T) {
	const (
		limit  = 5
		budget = 6 * time.Minute
	)
	n := 500
	if v := os.Getenv(envTasks); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err, envTasks)
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(envSeed); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, envSeed)
	}
	t.Logf("kill schedule seed %d (replay with %s=%d)", seed, envSeed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	ctx := context.Background()
	start := time.Now()
	deadline := start.Add(budget)

	ns := namespace(t, "burst")
	obs := observe(t, ns, limit)
	// Pods end 100ms after they start. With kwok's default of one second
	// the burst takes over five minutes on two busy cores (BenchmarkBurst);
	// what matters here is how often the controller dies mid-work, not
	// how long each agent runs.
	create(t, newAgent(ns, "burst", limit, map[string]string{cluster.AnnotationDuration: "100ms"}))

	holder, err := leaseHolder(ctx)
	require.NoError(t, err)
	ctrl := startExpendableController(t, shortLease...)

	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("burst-%03d", i)
	}
	createErr := make(chan error, 1)
	go func() { createErr <- createAll(ctx, ns, "burst", names) }()

	completed := func() int { return obs.countPhase(v1alpha1.TaskPhaseCompleted) }
	kills, exits := 0, 0
	for completed() < n && time.Now().Before(deadline) {
		if waitNewLeader(t, ctrl, holder, deadline) {
			pause := 2*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))
			if !sleepUntil(pause, deadline, func() bool { return completed() >= n || ctrl.exited() }) && !ctrl.exited() {
				break
			}
		}
		if ctrl.kill(t) {
			kills++
			t.Logf("%6.1fs: killed %s (kill %d), %d/%d Tasks Completed", time.Since(start).Seconds(), ctrl.name, kills, completed(), n)
		} else {
			// A controller that cannot renew its Lease in time exits: one
			// more crash, which the test copes with like a kill.
			exits++
			t.Logf("%6.1fs: %s exited by itself (%v); last lines of %s:\n%s", time.Since(start).Seconds(), ctrl.name, ctrl.waitErr, ctrl.logPath, cluster.LogTail(ctrl.logPath, 5))
		}
		// The dead controller's identity stays in the Lease until its
		// successor takes over.
		holder, err = leaseHolder(ctx)
		require.NoError(t, err)
		ctrl = startExpendableController(t, shortLease...)
	}
	require.NoError(t, <-createErr, "creating the Tasks")
	// The last controller finishes what is left.
	_ = wait.PollUntilContextTimeout(ctx, time.Second, time.Until(deadline), true, func(context.Context) (bool, error) {
		return completed() >= n, nil
	})
	elapsed := time.Since(start)
	obs.check(t)

	var tasks v1alpha1.TaskList
	require.NoError(t, env.k8s.List(ctx, &tasks, client.InNamespace(ns)))
	require.Len(t, tasks.Items, n, "Tasks in the namespace")
	byPhase := map[v1alpha1.TaskPhase][]string{}
	for _, task := range tasks.Items {
		byPhase[task.Status.Phase] = append(byPhase[task.Status.Phase], task.Name)
	}
	t.Logf("%d Tasks in %s with %d kills and %d other exits; at most %d active Jobs and %d Running Tasks at once; phases: %s",
		n, elapsed.Round(time.Second), kills, exits, obs.maxActive, obs.maxRunning, summarize(byPhase))
	for phase, names := range byPhase {
		if phase != v1alpha1.TaskPhaseCompleted {
			t.Errorf("%d Tasks %q after %s, e.g. %v", len(names), phase, elapsed.Round(time.Second), first(names, 10))
		}
	}
	assert.GreaterOrEqual(t, kills, 3, "the controller was killed while it worked")

	var jobs batchv1.JobList
	require.NoError(t, env.k8s.List(ctx, &jobs, client.InNamespace(ns)))
	jobsOfTask := map[string]int{}
	for i := range jobs.Items {
		for _, ref := range jobs.Items[i].OwnerReferences {
			if ref.Controller != nil && *ref.Controller {
				jobsOfTask[string(ref.UID)]++
			}
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	var notOneJob, neverOneJob, nonZero []string
	for _, task := range tasks.Items {
		if jobsOfTask[string(task.UID)] != 1 {
			notOneJob = append(notOneJob, fmt.Sprintf("%s:%d", task.Name, jobsOfTask[string(task.UID)]))
		}
		if len(obs.jobsOfTask[task.UID]) != 1 {
			neverOneJob = append(neverOneJob, fmt.Sprintf("%s:%d", task.Name, len(obs.jobsOfTask[task.UID])))
		}
		if task.Status.Phase == v1alpha1.TaskPhaseCompleted && (task.Status.ExitCode == nil || *task.Status.ExitCode != 0) {
			nonZero = append(nonZero, task.Name)
		}
	}
	assert.Empty(t, first(notOneJob, 10), "%d Tasks do not control exactly one Job (Task:Jobs)", len(notOneJob))
	assert.Empty(t, first(neverOneJob, 10), "%d Tasks did not get exactly one Job over the test (Task:Jobs)", len(neverOneJob))
	assert.Empty(t, first(nonZero, 10), "%d Completed Tasks without exitCode 0", len(nonZero))
	assert.LessOrEqual(t, obs.maxActive, limit)
	assert.Equal(t, limit, obs.maxActive, "the Agent used all its slots")
}

// createAll creates the Tasks with a few clients in parallel, as a burst of
// events would.
func createAll(ctx context.Context, ns, agent string, names []string) error {
	const workers = 4
	next := make(chan string)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range next {
				if err := env.k8s.Create(ctx, newTask(ns, name, agent)); err != nil {
					errs <- fmt.Errorf("Task %s: %w", name, err)
					return
				}
			}
		})
	}
	var err error
loop:
	for _, name := range names {
		select {
		case next <- name:
		case err = <-errs:
			break loop
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// waitNewLeader waits until the controller holds the Lease under an identity
// other than previous; false when the controller exited first.
func waitNewLeader(t *testing.T, ctrl *controllerProcess, previous string, deadline time.Time) bool {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Until(deadline), true, func(ctx context.Context) (bool, error) {
		if ctrl.exited() {
			return true, nil
		}
		h, err := leaseHolder(ctx)
		if err != nil {
			return false, nil
		}
		return h != "" && h != previous, nil
	})
	require.NoError(t, err, "%s did not take over the Lease from %q; last lines of %s:\n%s", ctrl.name, previous, ctrl.logPath, cluster.LogTail(ctrl.logPath, 30))
	return !ctrl.exited()
}

// sleepUntil sleeps for d, or until done holds; false when done held or
// the deadline passed.
func sleepUntil(d time.Duration, deadline time.Time, done func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if done() || time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

func summarize(byPhase map[v1alpha1.TaskPhase][]string) string {
	var phases []string
	for p := range byPhase {
		phases = append(phases, string(p))
	}
	sort.Strings(phases)
	out := ""
	for _, p := range phases {
		out += fmt.Sprintf("%s=%d ", p, len(byPhase[v1alpha1.TaskPhase(p)]))
	}
	return out
}

func first(s []string, n int) []string {
	sort.Strings(s)
	if len(s) > n {
		return s[:n]
	}
	return s
}
