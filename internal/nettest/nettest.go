// Package nettest gives tests the far ends of connections: TCP servers that
// answer (stand-ins for an API server, a metadata endpoint, a host a policy
// should refuse) and addresses where nothing answers.
package nettest

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Serve listens on addr (host:port; port 0 picks a free one), accepts every
// connection and closes it at once, until the test ends. It returns the
// address it listens on.
func Serve(t testing.TB, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().String()
}

// MetadataAddress is where clouds serve instance metadata; tests put a
// server there (AddLoopbackAddress) to stand in for it.
const MetadataAddress = "169.254.169.254"

// InNodePortRange says whether port is in Kubernetes' default NodePort range,
// 30000-32767, which some network plugins (kube-router among them) let pods
// reach on the node whatever their NetworkPolicies say.
func InNodePortRange(port int) bool { return port >= 30000 && port <= 32767 }

// ServeOutsideNodePorts is Serve on a free port of ip outside the NodePort
// range (InNodePortRange).
func ServeOutsideNodePorts(t testing.TB, ip string) string {
	t.Helper()
	for range 20 {
		addr := Serve(t, net.JoinHostPort(ip, "0"))
		if !InNodePortRange(Port(t, addr)) {
			return addr
		}
	}
	t.Fatal("no free port outside the NodePort range")
	return ""
}

// ClosedPort is an address on 127.0.0.1 where nothing listens: connections
// to it are refused.
func ClosedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// Port is the port of addr (host:port).
func Port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err, "port of %s", addr)
	return n
}

// AddLoopbackAddress puts ip on lo until the test ends, unless it is there
// already (needs root and ip(8), Debian's iproute2). The address is then
// local to this host: on a cloud host whose metadata service is at that
// address, the host itself reaches the test's server instead until the
// test ends.
func AddLoopbackAddress(t testing.TB, ip string) {
	t.Helper()
	out, err := exec.Command("ip", "-o", "addr", "show", "dev", "lo").CombinedOutput()
	require.NoError(t, err, "%s", out)
	if strings.Contains(string(out), " "+ip+"/") {
		return
	}
	cidr := ip + "/32"
	if net.ParseIP(ip).To4() == nil {
		cidr = ip + "/128"
	}
	out, err = exec.Command("ip", "addr", "add", cidr, "dev", "lo").CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() {
		out, err := exec.Command("ip", "addr", "del", cidr, "dev", "lo").CombinedOutput()
		assert.NoError(t, err, "removing %s from lo: %s", ip, out)
	})
}
