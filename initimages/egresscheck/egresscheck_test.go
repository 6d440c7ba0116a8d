package egresscheck

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/internal/nettest"
)

func TestRefusedTargetsPass(t *testing.T) {
	plan := &contract.EgressCheckPlan{Version: contract.Version, WaitSeconds: 5, Targets: []contract.EgressProbe{
		{Address: nettest.ClosedPort(t), What: "Kubernetes API"},
		// A black hole: TEST-NET-1 has no route here, or times out.
		{Address: "192.0.2.1:80", What: "cloud metadata"},
	}}
	start := time.Now()
	res, err := Run(context.Background(), plan, Options{DialTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, []string{plan.Targets[0].String(), plan.Targets[1].String()}, res.Refused)
	assert.Empty(t, res.Reachable)
	assert.Less(t, time.Since(start), 2*time.Second, "one round: the dials run at once")
}

func TestReachableTargetFailsAfterWait(t *testing.T) {
	api := nettest.Serve(t, "127.0.0.1:0")
	plan := &contract.EgressCheckPlan{Version: contract.Version, WaitSeconds: 1, Targets: []contract.EgressProbe{
		{Address: api, What: "Kubernetes API"},
		{Address: nettest.ClosedPort(t), What: "cloud metadata"},
	}}
	start := time.Now()
	res, err := Run(context.Background(), plan, Options{Interval: 100 * time.Millisecond})
	require.Error(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "a policy being programmed is waited for")
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Contains(t, err.Error(), "egress isolation is not enforced: the pod can connect to "+api+" (Kubernetes API)")
	assert.Contains(t, err.Error(), "docs/network.md")
	assert.Equal(t, []string{api + " (Kubernetes API)"}, res.Reachable)
	assert.Equal(t, []string{plan.Targets[1].String()}, res.Refused)
}

// A policy programmed a moment after the pod started: the target answers
// at first, then stops; the check passes and says how long it waited.
func TestPolicyProgrammedLatePasses(t *testing.T) {
	// The kernel completes connections to a listener's backlog: no
	// Accept is needed for them to succeed until it closes.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	time.AfterFunc(700*time.Millisecond, func() { l.Close() })
	plan := &contract.EgressCheckPlan{Version: contract.Version, WaitSeconds: 10, Targets: []contract.EgressProbe{{Address: addr, What: "Kubernetes API"}}}
	res, err := Run(context.Background(), plan, Options{Interval: 100 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, []string{addr + " (Kubernetes API)"}, res.Refused)
	assert.GreaterOrEqual(t, res.Waited, 600*time.Millisecond)
	assert.Less(t, res.Waited, 3*time.Second)
}
