package gitinit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"golang.org/x/net/proxy"
)

// Connection timeouts, set from Options at the start of each Run: go-git
// picks its transports from a process-wide registry, so the dialers read
// them when they dial.
var (
	httpDialTimeout atomic.Int64 // time.Duration
	httpIdleTimeout atomic.Int64 // time.Duration
)

// current is the HTTP transport built for the current timeouts.
var current atomic.Pointer[http.Transport]

func setHTTPTimeouts(dial, idle time.Duration) {
	if int64(dial) == httpDialTimeout.Load() && int64(idle) == httpIdleTimeout.Load() && current.Load() != nil {
		return
	}
	httpDialTimeout.Store(int64(dial))
	httpIdleTimeout.Store(int64(idle))
	// go-git's default HTTP client has no timeout at all: a server that
	// never answers, or stalls in the middle of a pack, would hang the
	// init container until the Task's deadline. Bound connecting, the TLS
	// handshake and the wait for response headers, and fail a connection
	// that delivers no data for the idle timeout; a large transfer that
	// keeps moving is never cut off.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialWithIdleTimeout(ctx, network, addr, dial, idle)
	}
	tr.TLSHandshakeTimeout = dial
	tr.ResponseHeaderTimeout = idle
	tr.IdleConnTimeout = idle / 2
	if old := current.Swap(tr); old != nil {
		old.CloseIdleConnections()
	}
}

func init() {
	setHTTPTimeouts(30*time.Second, 60*time.Second)
	c := githttp.NewClient(&http.Client{Transport: timeoutTransport{}})
	client.InstallProtocol("https", c)
	client.InstallProtocol("http", c)
}

// timeoutTransport sends each request through the current transport and
// names a server that does not answer.
type timeoutTransport struct{}

func (timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := current.Load().RoundTrip(req)
	if err != nil && isTimeout(err) {
		var ie *idleError
		if !errors.As(err, &ie) {
			return nil, &idleError{fmt.Sprintf("%s sent no data for %s (the server stalled)", req.URL.Host, time.Duration(httpIdleTimeout.Load()))}
		}
	}
	return resp, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func dialWithIdleTimeout(ctx context.Context, network, addr string, dial, idle time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &idleConn{Conn: c, idle: idle, addr: addr}, nil
}

// idleConn fails a read that waits longer than idle for data.
type idleConn struct {
	net.Conn
	idle time.Duration
	addr string
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	n, err := c.Conn.Read(p)
	if err != nil && n == 0 {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return 0, &idleError{fmt.Sprintf("%s sent no data for %s (the server stalled)", c.addr, c.idle)}
		}
	}
	return n, err
}

// idleError is a connection that stopped delivering data; it is transient.
type idleError struct{ msg string }

func (e *idleError) Error() string   { return e.msg }
func (e *idleError) Timeout() bool   { return true }
func (e *idleError) Temporary() bool { return true }

// idleProxyScheme names a "proxy" that is no proxy: go-git's SSH transport
// dials through golang.org/x/net/proxy when a proxy URL is given, which is
// the only way to hand it a connection with the idle timeout.
const idleProxyScheme = "kubeopencode-idle"

func init() {
	proxy.RegisterDialerType(idleProxyScheme, func(*url.URL, proxy.Dialer) (proxy.Dialer, error) {
		return idleDialer{}, nil
	})
}

// sshProxyOptions makes go-git's SSH transport dial through idleDialer,
// unless the environment names a real proxy (ALL_PROXY), which then keeps
// working as before.
func sshProxyOptions() transport.ProxyOptions {
	if os.Getenv("ALL_PROXY") != "" || os.Getenv("all_proxy") != "" {
		return transport.ProxyOptions{}
	}
	return transport.ProxyOptions{URL: idleProxyScheme + "://direct"}
}

// idleDialer connects directly with the dial and idle timeouts.
type idleDialer struct{}

func (d idleDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (idleDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialWithIdleTimeout(ctx, network, addr, time.Duration(httpDialTimeout.Load()), time.Duration(httpIdleTimeout.Load()))
}
