// Command controller runs the KubeOpenCode controller: it turns each Task
// into a Job and follows it to the end.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubeopencode/kubeopencode/internal/version"
	"github.com/kubeopencode/kubeopencode/operator/internal/controller"
	"github.com/kubeopencode/kubeopencode/operator/internal/images"
)

func main() {
	var (
		imgs        images.Images
		opts        controller.Options
		showVersion bool
		qps         float64
		eventQPS    float64
		burst       int
		deleteQPS   float64
	)
	flag.StringVar(&imgs.GitInit, "git-init-image", "", "git-init image, pinned by digest (repository@sha256:...).")
	flag.StringVar(&imgs.ContextInit, "context-init-image", "", "context-init image, pinned by digest (repository@sha256:...).")
	flag.IntVar(&opts.Workers, "workers", 16, "Tasks reconciled in parallel.")
	flag.DurationVar(&opts.StuckPodTimeout, "stuck-pod-timeout", controller.DefaultStuckPodTimeout, "How long a Task's pod may fail to start (image pull errors, missing Secrets, unschedulable) before the Task fails.")
	flag.DurationVar(&opts.StartupTimeout, "startup-timeout", controller.DefaultStartupTimeout, "How long a Task's scheduled pod may stay in ContainerCreating (a Secret volume that cannot be mounted, a slow image pull) before the Task fails.")
	flag.DurationVar(&opts.PodCreateGrace, "pod-create-grace", controller.DefaultPodCreateGrace, "How long a Task's Job may have no pod before the controller finds out why (for example PodSecurity admission) and fails the Task.")
	flag.DurationVar(&opts.ImageResolveTTL, "image-resolve-ttl", 5*time.Minute, "How long a tag selected by KubeOpenCodeConfig stays resolved to the same digest.")
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.StringVar(&opts.PprofAddr, "pprof-bind-address", "", "Address of Go's /debug/pprof endpoints (heap and CPU profiles); empty: off. Bind it to localhost and reach it with kubectl port-forward.")
	flag.BoolVar(&opts.LeaderElection, "leader-elect", true, "Elect a leader so that only one replica acts at a time.")
	flag.StringVar(&opts.LeaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the controller's own).")
	flag.DurationVar(&opts.LeaseDuration, "leader-election-lease-duration", 15*time.Second, "How long a replica waits before taking over a Lease its holder stopped renewing.")
	flag.DurationVar(&opts.RenewDeadline, "leader-election-renew-deadline", 10*time.Second, "How long the leader keeps retrying to renew its Lease before it gives up leadership; below the lease duration.")
	flag.DurationVar(&opts.RetryPeriod, "leader-election-retry-period", 2*time.Second, "How often replicas try to acquire or renew the Lease.")
	flag.Float64Var(&qps, "kube-api-qps", 200, "Queries per second to the API server.")
	flag.IntVar(&burst, "kube-api-burst", 400, "Burst of queries to the API server.")
	flag.Float64Var(&eventQPS, "event-qps", controller.DefaultEventQPS, "Events written per second at most; in a burst of Tasks the events trail their status by a few seconds.")
	flag.IntVar(&opts.EventBurst, "event-burst", controller.DefaultEventBurst, "Burst of event writes above --event-qps.")
	flag.Float64Var(&deleteQPS, "task-deletion-qps", controller.DefaultTaskDeletionQPS, "Finished Tasks deleted per second at most by retention (ttlSecondsAfterFinished, history limits), so that a backlog never slows the admission of new Tasks.")
	flag.IntVar(&opts.TaskDeletionBurst, "task-deletion-burst", controller.DefaultTaskDeletionBurst, "Burst of retention deletions above --task-deletion-qps.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	if showVersion {
		fmt.Println(version.Version)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if limit, ok := memoryLimit(); ok {
		log.Info("Set the Go memory limit from the container's", "bytes", limit)
	}
	if os.Getenv("GOGC") == "" {
		// Most of the heap is the informers' cache, which lives as long
		// as the process: collecting when the heap has grown by half
		// rather than doubled keeps the resident size near 1.5 times the
		// cache instead of twice it, for a little more collector CPU.
		debug.SetGCPercent(defaultGCPercent)
	}
	opts.Images = imgs
	opts.Version = version.Version

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "Could not find the API server")
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	opts.EventQPS = float32(eventQPS)
	opts.TaskDeletionQPS = float32(deleteQPS)
	ctx := ctrl.SetupSignalHandler()
	mgr, err := controller.NewManager(ctx, cfg, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubeopencode controller cannot start:\n%v\n", err)
		os.Exit(1)
	}
	go func() {
		// Loading the caches streams every Task and Job through the
		// decoder: the heap's high-water mark is then well above what
		// the caches keep. Give it back once instead of holding it for
		// the life of the process.
		if mgr.GetCache().WaitForCacheSync(ctx) {
			debug.FreeOSMemory()
		}
	}()
	log.Info("Starting controller", "version", version.Version, "gitInitImage", imgs.GitInit, "contextInitImage", imgs.ContextInit)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "Controller stopped")
		os.Exit(1)
	}
}

// defaultGCPercent is the controller's GOGC unless the environment sets one.
const defaultGCPercent = 50

// memoryLimit sets the Go runtime's soft memory limit to 90 % of the
// container's memory limit, which the Deployment passes in
// KUBEOPENCODE_MEMORY_LIMIT (bytes, from a resourceFieldRef), leaving the
// rest for what the runtime does not count (the binary's own pages). An
// explicit GOMEMLIMIT wins.
func memoryLimit() (int64, bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	limit, err := strconv.ParseInt(os.Getenv("KUBEOPENCODE_MEMORY_LIMIT"), 10, 64)
	if err != nil || limit <= 0 {
		return 0, false
	}
	limit = limit / 10 * 9
	debug.SetMemoryLimit(limit)
	return limit, true
}
