package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// ComponentKubeRouter is kube-router's network policy controller, run with
// Options.NetworkPolicy.
const ComponentKubeRouter = "kube-router"

// ServiceClusterIPRange is the cluster's Service CIDR (kube-apiserver
// --service-cluster-ip-range; kube-router needs it too).
const ServiceClusterIPRange = "10.96.0.0/16"

// podGateway is the host's address on the pod bridge (the CNI config's
// gateway), which PodBridgeAddress reports once the bridge exists.
const podGateway = "10.89.0.1"

// kube-router's network policy controller (pkg/controllers/netpol) names every
// iptables chain and ipset it creates with one of these prefixes; it touches
// only the filter table. natChain is this package's own chain in the nat
// table (the kubernetes Service address for pods, apiservice.go).
var (
	kubeRouterChainPrefixes = []string{"KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-"}
	kubeRouterIPSetPrefixes = []string{"KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-"}
)

const natChain = "KUBEOPENCODE-SVC"

// bridgeNFCallIPTables makes the kernel pass bridged IPv4 traffic (pod to pod
// on the same bridge) through iptables, where kube-router filters it.
const bridgeNFCallIPTables = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// networkPolicyTools are the host programs Options.NetworkPolicy needs, with
// the Debian package providing each.
var networkPolicyTools = []struct{ path, pkg string }{
	{"iptables", "iptables"},
	{"iptables-save", "iptables"},
	{"iptables-restore", "iptables"},
	{"ipset", "ipset"},
}

// RealNodeFeature names an optional part of a real node whose host
// requirements RealNodeSupported and RealNodePackages check on request.
type RealNodeFeature int

// WithNetworkPolicy: Options.NetworkPolicy (kube-router needs iptables and
// ipset).
const WithNetworkPolicy RealNodeFeature = 1

// netpolHost is what Options.NetworkPolicy changed on the host, undone by
// Stop.
type netpolHost struct {
	lock       *os.File        // host-wide: one cluster with NetworkPolicy at a time
	nftBefore  map[string]bool // nf_tables tables and chains before Start ("ip filter", "ip filter INPUT")
	restoreBNF string          // bridge-nf-call-iptables to write back; empty: untouched
}

// netpolLockPath is the host-wide lock of Options.NetworkPolicy: kube-router
// owns the host's KUBE-ROUTER-* chains, so two would undo each other's rules.
func netpolLockPath() string {
	if fi, err := os.Stat("/run"); err == nil && fi.IsDir() {
		return "/run/kubeopencode-networkpolicy.lock"
	}
	return filepath.Join(os.TempDir(), "kubeopencode-networkpolicy.lock")
}

// prepareNetworkPolicyHost takes the host-wide lock, removes what a cluster
// that died without Stop left in iptables and ipset, remembers the nf_tables
// chains that exist (iptables-nft creates base chains on first use; Stop
// deletes those that were not there and are empty again) and makes bridged
// traffic pass iptables.
func (c *Cluster) prepareNetworkPolicyHost(progress io.Writer) error {
	h := &netpolHost{}
	path := netpolLockPath()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("Options.NetworkPolicy: another cluster with NetworkPolicy runs on this host (it holds %s); kube-router owns the host's iptables chains, so only one can run at a time", path)
		}
		return fmt.Errorf("locking %s: %w", path, err)
	}
	h.lock = f
	c.netpol = h
	if err := cleanupNetworkPolicyHost(); err != nil {
		return fmt.Errorf("removing what an earlier cluster left in iptables and ipset: %w", err)
	}
	h.nftBefore = nftObjects()
	if data, err := os.ReadFile(bridgeNFCallIPTables); err == nil {
		if v := strings.TrimSpace(string(data)); v != "1" {
			if err := os.WriteFile(bridgeNFCallIPTables, []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("setting %s to 1: %w", bridgeNFCallIPTables, err)
			}
			h.restoreBNF = v
		}
	} else {
		fmt.Fprintf(progress, "note: %s does not exist (no br_netfilter): NetworkPolicies between pods on the same bridge are not enforced; between pods and this host they are\n", bridgeNFCallIPTables)
	}
	return nil
}

// startKubeRouter runs kube-router's network policy controller for the real
// node and returns once its first full sync has written its rules.
//
// kube-router v2.1.0 is the version the Go module proxy serves here. It has
// reported security flaws; that is acceptable because it only enforces
// NetworkPolicies in test clusters on this host and is never shipped.
func (c *Cluster) startKubeRouter(ctx context.Context, bins Binaries, creds *credentials) error {
	// kube-router lists and watches pods, namespaces, network policies,
	// nodes, services, endpoints and endpoint slices (its informers start
	// for all of them whatever runs). A client certificate in
	// system:masters, as for kwok, is enough for a throwaway test cluster.
	certFile, keyFile, err := creds.pki.client("kube-router", "kube-router", "system:masters")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(c.Dir, "kube-router.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.Server, creds.ca, certFile, keyFile, "kube-router"); err != nil {
		return err
	}
	kr, err := c.run(ComponentKubeRouter, bins.Path(KubeRouter), nil, kubeRouterArgs(kubeconfig)...)
	if err != nil {
		return err
	}
	return waitFor(ctx, "kube-router's first network policy sync", []*process{kr}, func(ctx context.Context) (bool, error) {
		return kubeRouterSynced(ctx), nil
	})
}

// kubeRouterArgs runs only the network policy controller ("firewall"): no
// routing, no service proxy (the cluster has none: apiservice.go), no health,
// metrics or pprof listener (the health server would also serve pprof on all
// interfaces).
func kubeRouterArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--run-firewall=true",
		"--run-router=false",
		"--run-service-proxy=false",
		"--run-loadbalancer=false",
		"--hostname-override=" + RealNodeName,
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--enable-ipv4=true",
		"--enable-ipv6=false",
		"--health-port=0",
		"--metrics-port=0",
		"--enable-pprof=false",
		// Syncs follow every pod, namespace and policy change at once; the
		// periodic one only repairs rules something else removed.
		"--iptables-sync-period=1m",
		"--v=1",
	}
}

// kubeRouterSynced says whether kube-router has completed a full sync: the
// rule that accepts traffic its policies allowed is written into
// KUBE-ROUTER-INPUT only by the iptables-restore that ends a full sync (the
// chain itself exists earlier).
func kubeRouterSynced(ctx context.Context) bool {
	out, err := exec.CommandContext(ctx, "iptables", "-w", "-t", "filter", "-S", "KUBE-ROUTER-INPUT").Output()
	return err == nil && bytes.Contains(out, []byte("rule to explicitly ACCEPT traffic that comply to network policies"))
}

// stopNetworkPolicyHost runs after kube-router has exited: it removes
// kube-router's chains, rules and ipsets (kube-router leaves them behind when
// it stops, and its --cleanup-config in v2.1.0 neither removes them nor
// spares the rest of the host: it flushes every IPVS service and deletes
// kube-router's interfaces), deletes the nf_tables base chains that
// appeared with it and are empty, restores bridge-nf-call-iptables and
// releases the host-wide lock.
func (c *Cluster) stopNetworkPolicyHost() error {
	h := c.netpol
	if h == nil {
		return nil
	}
	c.netpol = nil
	errs := []error{cleanupNetworkPolicyHost()}
	if h.nftBefore != nil {
		errs = append(errs, removeNewEmptyNFTObjects(h.nftBefore))
	}
	if h.restoreBNF != "" {
		if err := os.WriteFile(bridgeNFCallIPTables, []byte(h.restoreBNF+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s to %s: %w", bridgeNFCallIPTables, h.restoreBNF, err))
		}
	}
	_ = syscall.Flock(int(h.lock.Fd()), syscall.LOCK_UN)
	h.lock.Close()
	return errors.Join(errs...)
}

// cleanupNetworkPolicyHost removes kube-router's chains from the filter
// table, this package's chain from the nat table, every rule that jumps to
// them, and then kube-router's ipsets.
func cleanupNetworkPolicyHost() error {
	errs := []error{
		removeChains("filter", kubeRouterChainPrefixes),
		removeChains("nat", []string{natChain}),
	}
	if errs[0] == nil {
		errs = append(errs, destroyIPSets(kubeRouterIPSetPrefixes))
	}
	return errors.Join(errs...)
}

// removeChains deletes, in one iptables-restore transaction, every chain of
// table whose name has one of prefixes and every rule elsewhere that jumps
// to one.
func removeChains(table string, prefixes []string) error {
	out, err := exec.Command("iptables-save", "-t", table).Output()
	if err != nil {
		// iptables-nft has nothing to save for a table that does not
		// exist yet; nothing of ours is in it then.
		return nil
	}
	ours := func(name string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) })
	}
	var chains, deletes []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
			if name, _, _ := strings.Cut(line[1:], " "); ours(name) {
				chains = append(chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || ours(f[1]) {
				continue // flushed with its chain
			}
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
					deletes = append(deletes, "-D"+line[2:])
					break
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(chains) == 0 && len(deletes) == 0 {
		return nil
	}
	var in strings.Builder
	in.WriteString("*" + table + "\n")
	for _, d := range deletes {
		in.WriteString(d + "\n")
	}
	for _, ch := range chains {
		in.WriteString("-F " + ch + "\n")
	}
	for _, ch := range chains {
		in.WriteString("-X " + ch + "\n")
	}
	in.WriteString("COMMIT\n")
	cmd := exec.Command("iptables-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore --noflush (removing %d chain(s) and %d jump(s) from the %s table): %v: %s\n%s",
			len(chains), len(deletes), table, err, strings.TrimSpace(string(out)), in.String())
	}
	return nil
}

// destroyIPSets destroys the ipsets whose names have one of prefixes.
func destroyIPSets(prefixes []string) error {
	out, err := exec.Command("ipset", "list", "-n").Output()
	if err != nil {
		return fmt.Errorf("ipset list -n: %w", err)
	}
	var errs []error
	for _, name := range strings.Fields(string(out)) {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		if out, err := exec.Command("ipset", "destroy", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ipset destroy %s: %v: %s", name, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// nftTouched are the nf_tables tables iptables-nft fills for kube-router and
// the kubernetes Service address; only their base chains are candidates for
// removal.
var nftTouched = map[string][]string{
	"ip filter": {"INPUT", "FORWARD", "OUTPUT"},
	"ip nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
}

// nftObjects lists the nf_tables tables ("ip filter") and chains
// ("ip filter INPUT") of the host; nil without the nft command.
func nftObjects() map[string]bool {
	out, err := exec.Command("nft", "list", "chains").Output()
	if err != nil {
		return nil
	}
	objs := map[string]bool{}
	table := ""
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "table":
			table = f[1] + " " + f[2]
			objs[table] = true
		case len(f) >= 2 && f[0] == "chain" && table != "":
			objs[table+" "+f[1]] = true
		}
	}
	// nft list chains omits tables without chains.
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
				objs[f[1]+" "+f[2]] = true
			}
		}
	}
	return objs
}

// removeNewEmptyNFTObjects deletes the base chains of nftTouched that were
// not in before, if they are empty (nf_tables refuses to delete a chain that
// has rules or is referenced), then those tables of nftTouched that were not
// in before and have no chain left.
func removeNewEmptyNFTObjects(before map[string]bool) error {
	now := nftObjects()
	if now == nil {
		return nil
	}
	for table, chains := range nftTouched {
		if !now[table] {
			continue
		}
		fam, name, _ := strings.Cut(table, " ")
		for _, ch := range chains {
			key := table + " " + ch
			if now[key] && !before[key] {
				// Fails, and so keeps the chain, when it is not empty.
				_ = exec.Command("nft", "delete", "chain", fam, name, ch).Run()
			}
		}
		if before[table] {
			continue
		}
		out, err := exec.Command("nft", "list", "table", fam, name).Output()
		if err != nil {
			continue
		}
		if !strings.Contains(string(out), "chain ") && !strings.Contains(string(out), "set ") && !strings.Contains(string(out), "map ") {
			if out, err := exec.Command("nft", "delete", "table", fam, name).CombinedOutput(); err != nil {
				return fmt.Errorf("nft delete table %s %s: %v: %s", fam, name, err, strings.TrimSpace(string(out)))
			}
		}
	}
	return nil
}
