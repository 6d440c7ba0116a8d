package controller

import (
	"context"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
	"github.com/kubeopencode/kubeopencode/operator/internal/images"
	"github.com/kubeopencode/kubeopencode/operator/internal/jobbuilder"
)

// Options configure the controller manager.
type Options struct {
	Images          images.Images
	Version         string
	Workers         int
	StuckPodTimeout time.Duration
	PodCreateGrace  time.Duration
	StartupTimeout  time.Duration
	ImageResolveTTL time.Duration
	MetricsAddr     string
	ProbeAddr       string
	// PprofAddr serves Go's /debug/pprof endpoints when set.
	PprofAddr          string
	LeaderElection     bool
	LeaderElectionNS   string
	LeaderElectionName string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election;
	// zero keeps controller-runtime's defaults (15s, 10s, 2s). A shorter
	// lease hands over sooner after a replica dies without releasing it.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// EventQPS and EventBurst limit event writes (zero: DefaultEventQPS,
	// DefaultEventBurst).
	EventQPS   float32
	EventBurst int
	// TaskDeletionQPS and TaskDeletionBurst limit the deletions of finished
	// Tasks by retention (zero: DefaultTaskDeletionQPS, DefaultTaskDeletionBurst).
	TaskDeletionQPS   float32
	TaskDeletionBurst int
	// SkipNameValidation allows several managers in one process (tests).
	SkipNameValidation bool
	// Logs opens agent containers' logs (nil: through the API server's
	// pods/log, which is what a cluster needs; tests without a kubelet
	// give their own).
	Logs LogOpener
	// TranscriptFlush and ResultsWait: see DefaultTranscriptFlush and
	// DefaultResultsWait.
	TranscriptFlush time.Duration
	ResultsWait     time.Duration
	// HostResolver looks up network.egress host names (nil: the
	// controller pod's resolver).
	HostResolver HostResolver
}

// Scheme knows the built-in types and the kubeopencode.io types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// NewManager builds the controller manager with its reconcilers: Tasks,
// Agents, and the retention of finished Tasks.
//
// The cache holds only what the controller owns: Tasks, Agents and the
// KubeOpenCodeConfig, plus the Jobs and Pods labelled as belonging to a Task.
// ConfigMaps are read straight from the API server when a Task needs them,
// and Secrets are never read at all, so memory does not grow with unrelated
// objects in the cluster. Nor does it grow much with history: Jobs that
// succeeded and pods that ended are not cached, and of the rest (finished
// Tasks, failed Jobs) the cache keeps only what reconciliation reads (see
// cache.go).
func NewManager(ctx context.Context, cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if err := o.Images.Validate(); err != nil {
		return nil, err
	}
	owned, err := labels.NewRequirement(jobbuilder.LabelTaskUID, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	ownedSelector := labels.NewSelector().Add(*owned)
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.LeaderElectionName == "" {
		o.LeaderElectionName = "kubeopencode-controller"
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        Scheme(),
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.ProbeAddr,
		PprofBindAddress:              o.PprofAddr,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              o.LeaderElectionName,
		LeaderElectionNamespace:       o.LeaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 nonZero(o.LeaseDuration),
		RenewDeadline:                 nonZero(o.RenewDeadline),
		RetryPeriod:                   nonZero(o.RetryPeriod),
		Controller:                    config.Controller{SkipNameValidation: ptr.To(o.SkipNameValidation)},
		Cache: cache.Options{
			// See cache.go: each kind keeps only what reconciliation reads.
			ByObject: map[client.Object]cache.ByObject{
				&v1alpha1.Task{}: {Transform: slimTask},
				// Jobs that succeeded and pods that ended are left out
				// altogether: the controller reads the few it still needs,
				// when a Task ends, from the API server.
				&batchv1.Job{}: {Label: ownedSelector, Field: fields.OneTermEqualSelector("status.successful", "0"), Transform: slimJob},
				&corev1.Pod{}: {Label: ownedSelector, Transform: slimPod, Field: fields.AndSelectors(
					fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
					fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)))},
			},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		Client: client.Options{Cache: &client.CacheOptions{
			DisableFor: []client.Object{&corev1.ConfigMap{}, &corev1.Secret{}},
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := IndexTasks(ctx, mgr); err != nil {
		return nil, err
	}
	events, err := newEventRecorder(ctx, cfg, o.EventQPS, o.EventBurst)
	if err != nil {
		return nil, err
	}
	logs := o.Logs
	if logs == nil {
		clientset, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		logs = ClientsetLogOpener(clientset)
	}
	tasks := &TaskReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		Recorder:        events,
		Resolver:        &images.Resolver{Defaults: o.Images, Version: o.Version, TTL: o.ImageResolveTTL},
		StuckPodTimeout: o.StuckPodTimeout,
		PodCreateGrace:  o.PodCreateGrace,
		StartupTimeout:  o.StartupTimeout,
		Logs:            logs,
		TranscriptFlush: o.TranscriptFlush,
		ResultsWait:     o.ResultsWait,
		HostResolver:    o.HostResolver,
	}
	if err := tasks.SetupWithManager(mgr, o.Workers); err != nil {
		return nil, err
	}
	if err := (&AgentReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader()}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	deleter := newTaskDeleter(mgr.GetClient(), o.TaskDeletionQPS, o.TaskDeletionBurst)
	if err := (&TTLAfterFinishedReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, deleter); err != nil {
		return nil, err
	}
	if err := (&HistoryLimitReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, deleter); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// nonZero leaves a duration unset for controller-runtime to default.
func nonZero(d time.Duration) *time.Duration {
	if d <= 0 {
		return nil
	}
	return &d
}
