package realnode_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// apiServiceProxy plays kube-proxy's part for the one Service pods of this
// suite need: default/kubernetes. The local cluster has no kube-proxy and
// its API server listens on 127.0.0.1 only, which a pod's network namespace
// cannot reach. Pods get KUBERNETES_SERVICE_HOST/PORT from the kubelet as on
// any cluster; the proxy puts the Service's ClusterIP on the host's loopback
// interface (pods route to it through the bridge, the host delivers it
// locally) and forwards every connection to the API server. The API
// server's certificate already names the ClusterIP, so in-cluster clients
// verify it as usual and the controller's Deployment needs no change.
type apiServiceProxy struct {
	addr    string
	ln      net.Listener
	cidr    string // the address added to lo, removed on Close; empty if it was there before
	wg      sync.WaitGroup
	closeMu sync.Once
}

func startAPIServiceProxy(ctx context.Context, cs kubernetes.Interface, server string) (*apiServiceProxy, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, err
	}
	backend := u.Host
	var ip string
	var port int32
	// The API server creates the Service shortly after it starts.
	deadline := time.Now().Add(time.Minute)
	for {
		svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err == nil && svc.Spec.ClusterIP != "" && len(svc.Spec.Ports) > 0 {
			ip, port = svc.Spec.ClusterIP, svc.Spec.Ports[0].Port
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("service default/kubernetes has no ClusterIP: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p := &apiServiceProxy{addr: net.JoinHostPort(ip, strconv.Itoa(int(port)))}
	if !hasLocalAddress(ip) {
		p.cidr = ip + "/32"
		if out, err := exec.CommandContext(ctx, "ip", "addr", "add", p.cidr, "dev", "lo").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip addr add %s dev lo: %v: %s", p.cidr, err, strings.TrimSpace(string(out)))
		}
	}
	if p.ln, err = net.Listen("tcp", p.addr); err != nil {
		p.Close()
		return nil, err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			conn, err := p.ln.Accept()
			if err != nil {
				return
			}
			go forward(conn, backend)
		}
	}()
	return p, nil
}

func forward(conn net.Conn, backend string) {
	defer conn.Close()
	up, err := net.DialTimeout("tcp", backend, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
	<-done
}

func (p *apiServiceProxy) Close() {
	p.closeMu.Do(func() {
		if p.ln != nil {
			p.ln.Close()
			p.wg.Wait()
		}
		if p.cidr != "" {
			_ = exec.Command("ip", "addr", "del", p.cidr, "dev", "lo").Run()
		}
	})
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
