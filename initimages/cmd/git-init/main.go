// Command git-init clones the repository of one Git context into the pod's
// workspace before the agent starts. Its plan comes as JSON in the
// environment variable named by contract.GitPlanEnv; its outcome goes to the
// termination message as a contract.Result.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/initimages/gitinit"
	"github.com/kubeopencode/kubeopencode/initimages/internal/initutil"
	"github.com/kubeopencode/kubeopencode/internal/version"
)

// Environment overrides of the retry budget, mainly for tests.
const (
	envRetryBudget    = "KUBEOPENCODE_GIT_RETRY_BUDGET"
	envInitialBackoff = "KUBEOPENCODE_GIT_INITIAL_BACKOFF"
)

func main() {
	os.Exit(run())
}

func run() int {
	opts := gitinit.DefaultOptions()
	opts.Roots = initutil.AllowedRoots(initutil.DefaultCloneRoots...)
	termPath := flag.String("termination-message-path", initutil.EnvOr(initutil.EnvTerminationMessagePath, contract.TerminationMessagePath), "file that receives the JSON result (env "+initutil.EnvTerminationMessagePath+")")
	flag.DurationVar(&opts.RetryBudget, "retry-budget", durationEnv(envRetryBudget, opts.RetryBudget), "how long transient network errors are retried (env "+envRetryBudget+")")
	flag.DurationVar(&opts.InitialBackoff, "initial-backoff", durationEnv(envInitialBackoff, opts.InitialBackoff), "wait after the first transient failure, doubled each time (env "+envInitialBackoff+")")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return 0
	}

	initutil.SetGroupUmask()
	gitinit.SetRuntimeMemoryLimit(opts.MemoryLimit)
	if os.Getenv("GOGC") == "" {
		// Most of git-init's heap is object content that is garbage soon
		// after it is hashed or written: collecting more often lowers the
		// peak (for a 64 MiB file stored as a delta, from 295 to 248 MiB in
		// the benchmark) at no measurable cost in time.
		debug.SetGCPercent(25)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	res, err := clone(ctx, opts)
	return initutil.Finish("git-init", *termPath, res, err,
		fmt.Sprintf("checked out %s at commit %s", res.Repository, res.Commit))
}

func clone(ctx context.Context, opts gitinit.Options) (res contract.Result, err error) {
	// A bug must still end in a termination message, not only a stack trace.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("git-init failed unexpectedly: %v", p)
		}
	}()
	raw, ok := os.LookupEnv(contract.GitPlanEnv)
	if !ok || raw == "" {
		return contract.Result{}, fmt.Errorf("environment variable %s with the Git plan is not set", contract.GitPlanEnv)
	}
	plan, err := contract.DecodeGitPlan([]byte(raw))
	if err != nil {
		return contract.Result{}, err
	}
	return gitinit.Run(ctx, plan, opts)
}

func durationEnv(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "git-init: ignoring %s=%q: %v\n", name, v, err)
		return def
	}
	return d
}
