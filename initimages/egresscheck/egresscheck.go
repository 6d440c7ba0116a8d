// Package egresscheck proves, from inside a Task's pod, that the pod's
// NetworkPolicy is enforced: it connects to addresses the policy refuses
// (the Kubernetes API, the cloud metadata endpoint) and succeeds only when
// none of them answers. It runs in context-init as the pod's first init
// container, so no Git checkout and no agent starts in a pod whose
// isolation is missing.
//
// A NetworkPolicy is programmed by the network plugin after the pod has an
// address, usually within a second or two; the check waits for it, up to
// the plan's WaitSeconds, and fails only if a target stays reachable.
package egresscheck

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

// Options tune Run; zero values take the defaults.
type Options struct {
	// Dial connects; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// DialTimeout bounds one connection attempt; 0 means 1s.
	DialTimeout time.Duration
	// Interval is the pause between rounds; 0 means 500ms.
	Interval time.Duration
	// Log receives one line per round that found a target reachable.
	Log io.Writer
}

// Result is what Run found.
type Result struct {
	// Refused are the targets no connection reached, as "ADDRESS (WHAT)".
	Refused []string
	// Reachable are those a connection reached in the last round.
	Reachable []string
	// Waited is how long the policy took to be enforced.
	Waited time.Duration
}

// Run tries every target of plan until none can be reached, or until
// plan.WaitSeconds have passed with some still reachable, which is an error
// naming them.
func Run(ctx context.Context, plan *contract.EgressCheckPlan, opts Options) (Result, error) {
	if opts.Dial == nil {
		opts.Dial = (&net.Dialer{}).DialContext
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = time.Second
	}
	if opts.Interval == 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	wait := time.Duration(plan.WaitSeconds) * time.Second
	start := time.Now()
	for {
		reachable := round(ctx, plan.Targets, opts)
		res := Result{Waited: time.Since(start)}
		for i, t := range plan.Targets {
			if reachable[i] {
				res.Reachable = append(res.Reachable, t.String())
			} else {
				res.Refused = append(res.Refused, t.String())
			}
		}
		if len(res.Reachable) == 0 {
			return res, nil
		}
		if time.Since(start)+opts.Interval > wait || ctx.Err() != nil {
			return res, fmt.Errorf("egress isolation is not enforced: the pod can connect to %s, which its NetworkPolicy refuses, %s after it started; "+
				"the cluster's network plugin does not enforce NetworkPolicy (or a proxy answers for every address): "+
				"use one that does, or remove network.egress from the Agent (docs/network.md)",
				strings.Join(res.Reachable, ", "), time.Since(start).Round(100*time.Millisecond))
		}
		fmt.Fprintf(opts.Log, "egress check: %s still reachable after %s; waiting for the NetworkPolicy\n",
			strings.Join(res.Reachable, ", "), time.Since(start).Round(100*time.Millisecond))
		select {
		case <-ctx.Done():
		case <-time.After(opts.Interval):
		}
	}
}

// round tries every target at once and says which it reached.
func round(ctx context.Context, targets []contract.EgressProbe, opts Options) []bool {
	out := make([]bool, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
			defer cancel()
			c, err := opts.Dial(dctx, "tcp", t.Address)
			if err == nil {
				out[i] = true
				c.Close()
			}
		})
	}
	wg.Wait()
	return out
}
