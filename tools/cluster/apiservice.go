package cluster

import (
	"context"
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
type apiServiceForwarder struct {
	addr string
	ln   net.Listener
	cidr string // the address added to lo, removed on close; empty if it was there before
	wg   sync.WaitGroup
	once sync.Once

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
// (host:port of the API server).
func startAPIServiceForwarder(ctx context.Context, cs kubernetes.Interface, backend string) (*apiServiceForwarder, error) {
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
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			conn, err := f.ln.Accept()
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
	return f, nil
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
				err = fmt.Errorf("ip addr del %s dev lo: %v: %s", f.cidr, e, strings.TrimSpace(string(out)))
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
