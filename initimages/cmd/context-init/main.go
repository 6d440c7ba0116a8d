// Command context-init writes a Task's text and ConfigMap contexts into the
// pod's volumes before the agent starts. It reads a contract.ContextPlan from
// contract.ContextPlanFile and writes a contract.Result to the termination
// message.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/initimages/contextinit"
	"github.com/kubeopencode/kubeopencode/initimages/egresscheck"
	"github.com/kubeopencode/kubeopencode/initimages/internal/initutil"
	"github.com/kubeopencode/kubeopencode/internal/version"
)

// envPlanFile overrides where the plan is read, mainly for tests.
const envPlanFile = "KUBEOPENCODE_CONTEXT_PLAN_FILE"

func main() {
	os.Exit(run())
}

func run() int {
	planPath := flag.String("plan", initutil.EnvOr(envPlanFile, contract.ContextPlanFile), "context plan JSON (env "+envPlanFile+")")
	termPath := flag.String("termination-message-path", initutil.EnvOr(initutil.EnvTerminationMessagePath, contract.TerminationMessagePath), "file that receives the JSON result (env "+initutil.EnvTerminationMessagePath+")")
	showVersion := flag.Bool("version", false, "print the version and exit")
	egress := flag.Bool("egress-check", false, "instead of writing contexts, check that the addresses of the plan in $"+contract.EgressCheckEnv+" are out of reach (the pod's NetworkPolicy is enforced)")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return 0
	}
	if *egress {
		return egressCheck(*termPath)
	}

	initutil.SetGroupUmask()
	opts := contextinit.DefaultOptions()
	opts.Roots = initutil.AllowedRoots(initutil.DefaultWriteRoots...)

	stats, err := apply(*planPath, opts)
	return initutil.Finish("context-init", *termPath, contract.Result{}, err,
		fmt.Sprintf("wrote %d files, skipped %d optional contexts", stats.Files, stats.Skipped))
}

// egressCheck runs the pod's egress check (package egresscheck) and
// reports what it found refused, or what it could reach, in the
// termination message.
func egressCheck(termPath string) int {
	plan, err := contract.DecodeEgressCheckPlan([]byte(os.Getenv(contract.EgressCheckEnv)))
	if err != nil {
		return initutil.Finish("egress-check", termPath, contract.Result{}, fmt.Errorf("$%s: %w", contract.EgressCheckEnv, err), "")
	}
	res, err := egresscheck.Run(context.Background(), plan, egresscheck.Options{Log: os.Stdout})
	return initutil.Finish("egress-check", termPath, contract.Result{Refused: res.Refused, Reachable: res.Reachable}, err,
		fmt.Sprintf("refused %s (enforced after %s)", strings.Join(res.Refused, ", "), res.Waited.Round(10*time.Millisecond)))
}

func apply(planPath string, opts contextinit.Options) (stats contextinit.Stats, err error) {
	// A bug must still end in a termination message, not only a stack trace.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("context-init failed unexpectedly: %v", p)
		}
	}()
	data, err := os.ReadFile(planPath)
	if err != nil {
		return contextinit.Stats{}, fmt.Errorf("cannot read the context plan: %w (the controller mounts it from the Task's plan ConfigMap)", err)
	}
	plan, err := contract.DecodeContextPlan(data)
	if err != nil {
		return contextinit.Stats{}, err
	}
	return contextinit.Apply(plan, opts)
}
