package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// apiServiceForwarder plays kube-proxy's part for the one Service every
// in-cluster client needs: default/kubernetes. The cluster has no kube-proxy
// and its API server listens on 127.0.0.1 only, which a pod's network
// namespace cannot reach. Pods get KUBERNETES_SERVICE_HOST/PORT from the
// kubelet as on any cluster; the forwarder puts the Service's ClusterIP on the
// host's loopback interface (pods route to it through the bridge, the host
// delivers it locally) and forwards every connection to the API server. The
// serving certificate names the ClusterIP (writeCredentials), so in-cluster
// clients verify it as usual.
//
// A few lines of io.Copy rather than a proxy library: it forwards raw TCP
// (TLS passes through untouched) and no kube-proxy mode runs without
// iptables or IPVS, which these hosts do not offer to the cluster.
//
// With Options.NetworkPolicy it also plays kube-proxy's DNAT: connections from
// pods to the ClusterIP are rewritten in the nat table to an endpoint address
// on the pod bridge where the forwarder listens too. A NetworkPolicy then
// sees the endpoint, as on a cluster with kube-proxy; kube-router lets every
// packet whose destination is still in the Service range pass its INPUT
// chain unfiltered (it expects IPVS to forward it to an endpoint, filtered
// there), so without the DNAT no policy could stop a pod from reaching the
// API server.
type apiServiceForwarder struct {
	addr     string
	endpoint string // with Options.NetworkPolicy: the DNAT target, host:port on the pod bridge
	ln       net.Listener
	epLn     net.Listener
	natAdded bool   // natChain exists; close removes it and the jump to it
	cidr     string // the address added to lo, removed on close; empty if it was there before
	wg       sync.WaitGroup
	once     sync.Once

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // closed on close, so that no copy outlives Stop
	closed bool
}

// track records conn for close; false when close has begun and conn is closed.
func (f *apiServiceForwarder) track(conn net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		conn.Close()
		return false
	}
	f.conns[conn] = struct{}{}
	return true
}

func (f *apiServiceForwarder) untrack(conn net.Conn) {
	f.mu.Lock()
	delete(f.conns, conn)
	f.mu.Unlock()
	conn.Close()
}

// startAPIServiceForwarder waits for the kubernetes Service, which the API
// server creates shortly after it starts, and forwards its address to backend
// (host:port of the API server). With endpointIP (the host's address on the
// pod bridge, which may not exist yet) pods' connections to the Service are
// DNATed to a port there instead.
func startAPIServiceForwarder(ctx context.Context, cs kubernetes.Interface, backend, endpointIP string) (*apiServiceForwarder, error) {
	var ip string
	var port int32
	if err := waitFor(ctx, "service default/kubernetes", nil, func(ctx context.Context) (bool, error) {
		svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil || svc.Spec.ClusterIP == "" || len(svc.Spec.Ports) == 0 {
			return false, nil
		}
		ip, port = svc.Spec.ClusterIP, svc.Spec.Ports[0].Port
		return true, nil
	}); err != nil {
		return nil, err
	}
	f := &apiServiceForwarder{addr: net.JoinHostPort(ip, strconv.Itoa(int(port))), conns: map[net.Conn]struct{}{}}
	if !hasLocalAddress(ip) {
		f.cidr = ip + "/32"
		if out, err := exec.CommandContext(ctx, "ip", "addr", "add", f.cidr, "dev", "lo").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("putting the kubernetes Service address on lo (ip addr add %s dev lo; the ip command is in Debian's iproute2): %v: %s",
				f.cidr, err, strings.TrimSpace(string(out)))
		}
	}
	var err error
	if f.ln, err = net.Listen("tcp", f.addr); err != nil {
		f.close()
		return nil, fmt.Errorf("listening on the kubernetes Service address: %w", err)
	}
	f.serve(f.ln, backend)
	if endpointIP != "" {
		// The bridge and its address appear with the first pod: bind
		// before that (IP_FREEBIND).
		if f.epLn, err = listenOutsideNodePorts(ctx, endpointIP); err != nil {
			f.close()
			return nil, fmt.Errorf("listening on the pod bridge address for the kubernetes Service: %w", err)
		}
		f.endpoint = f.epLn.Addr().String()
		f.serve(f.epLn, backend)
		rule := []string{"PREROUTING", "-i", PodBridge, "-d", ip + "/32", "-p", "tcp", "--dport", strconv.Itoa(int(port)),
			"-m", "comment", "--comment", "kubeopencode: kubernetes Service for pods", "-j", natChain}
		dnat := []string{natChain, "-p", "tcp", "-j", "DNAT", "--to-destination", f.endpoint}
		for _, args := range [][]string{{"-N", natChain}, append([]string{"-A"}, dnat...), append([]string{"-I"}, rule...)} {
			if out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-t", "nat"}, args...)...).CombinedOutput(); err != nil {
				f.close()
				return nil, fmt.Errorf("iptables -t nat %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
			f.natAdded = true
		}
	}
	return f, nil
}

func (f *apiServiceForwarder) serve(ln net.Listener, backend string) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.forward(conn, backend)
			}()
		}
	}()
}

func (f *apiServiceForwarder) forward(conn net.Conn, backend string) {
	if !f.track(conn) {
		return
	}
	defer f.untrack(conn)
	up, err := net.DialTimeout("tcp", backend, 10*time.Second)
	if err != nil || !f.track(up) {
		return
	}
	defer f.untrack(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
	<-done
}

// close stops accepting, ends every forwarded connection (watches would
// otherwise keep them open for minutes) and removes the address from lo.
func (f *apiServiceForwarder) close() error {
	var err error
	f.once.Do(func() {
		if f.natAdded {
			err = removeChains("nat", []string{natChain})
		}
		if f.epLn != nil {
			f.epLn.Close()
		}
		if f.ln != nil {
			f.ln.Close()
			f.mu.Lock()
			f.closed = true
			for c := range f.conns {
				c.Close()
			}
			f.mu.Unlock()
			f.wg.Wait()
		}
		if f.cidr != "" {
			if out, e := exec.Command("ip", "addr", "del", f.cidr, "dev", "lo").CombinedOutput(); e != nil {
				err = errors.Join(err, fmt.Errorf("ip addr del %s dev lo: %v: %s", f.cidr, e, strings.TrimSpace(string(out))))
			}
		}
	})
	return err
}

func hasLocalAddress(ip string) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
			return true
		}
	}
	return false
}

// The API server's default NodePort range. kube-router lets pods reach every
// local address on these ports whatever their egress policies say (it
// expects NodePort Services there).
const nodePortMin, nodePortMax = 30000, 32767

// listenOutsideNodePorts listens on a free port of ip (IP_FREEBIND) outside
// the NodePort range, so that NetworkPolicies decide who reaches it.
func listenOutsideNodePorts(ctx context.Context, ip string) (net.Listener, error) {
	var rejected []net.Listener
	defer func() {
		for _, l := range rejected {
			l.Close()
		}
	}()
	for range 20 {
		l, err := listenFreebind(ctx, net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, err
		}
		if p := l.Addr().(*net.TCPAddr).Port; p < nodePortMin || p > nodePortMax {
			return l, nil
		}
		rejected = append(rejected, l)
	}
	return nil, fmt.Errorf("no free port on %s outside the NodePort range %d-%d", ip, nodePortMin, nodePortMax)
}
