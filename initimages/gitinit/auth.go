package gitinit

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

func init() {
	// Never read ~/.ssh/config: the container has no meaningful home, and
	// a Host alias there must not redirect where a Task's repository is
	// fetched from.
	gitssh.DefaultSSHConfig = nil
	// go-git's file:// and git:// transports are never wanted here; the
	// file transport would even run git-upload-pack as a subprocess.
	client.InstallProtocol("file", nil)
	client.InstallProtocol("git", nil)
}

// parseRepository accepts https://, http://, ssh:// and scp-like URLs and
// returns the URL without credentials (what .git/config and the Result
// carry), the userinfo it removed, and the parsed endpoint.
func parseRepository(raw string) (clean string, userinfo *url.Userinfo, ep *transport.Endpoint, err error) {
	ep, err = transport.NewEndpoint(raw)
	if err != nil {
		return "", nil, nil, fmt.Errorf("repository URL %q is not valid: %v", redact(raw), err)
	}
	switch ep.Protocol {
	case "https", "http":
		u, err := url.Parse(raw)
		if err != nil {
			return "", nil, nil, fmt.Errorf("repository URL %q is not valid: %v", redact(raw), err)
		}
		userinfo = u.User
		u.User = nil
		return u.String(), userinfo, ep, nil
	case "ssh":
		if !strings.Contains(raw, "://") {
			// scp-like user@host:path never carries a password.
			return raw, nil, ep, nil
		}
		u, err := url.Parse(raw)
		if err != nil {
			return "", nil, nil, fmt.Errorf("repository URL %q is not valid: %v", redact(raw), err)
		}
		if u.User != nil {
			userinfo = u.User
			u.User = url.User(u.User.Username())
		}
		return u.String(), userinfo, ep, nil
	}
	return "", nil, nil, fmt.Errorf("repository URL %q uses %q: only https://, http://, ssh:// and user@host:path are supported", redact(raw), ep.Protocol)
}

// redact hides a password in a URL for error messages.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	return raw
}

// credentials are the keys of the Git context's Secret.
type credentials struct {
	dir            string
	username       string
	password       string
	sshKey         []byte
	knownHostsFile string
	insecureHost   bool
}

func readCredentials(dir string) (*credentials, error) {
	c := &credentials{dir: dir}
	if dir == "" {
		return c, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("credentials directory %s cannot be read (%v): check the Secret named by the Git context's secretRef", dir, err)
	}
	// The Secret volume is optional so that a missing Secret becomes this
	// message rather than a pod stuck in ContainerCreating; it then shows
	// up as an empty directory.
	keys := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") {
			keys++
		}
	}
	if keys == 0 {
		return nil, &permanentError{fmt.Sprintf("the credentials Secret mounted at %s is missing or empty: check that the Secret named by the Git context's secretRef exists in the Task's namespace and has keys %q/%q or %q/%q", dir, contract.SecretKeyUsername, contract.SecretKeyPassword, contract.SecretKeySSHKey, contract.SecretKeyKnownHosts)}
	}
	read := func(key string) ([]byte, bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("cannot read key %q of the credentials Secret: %v", key, err)
		}
		return b, true, nil
	}
	var b []byte
	var ok bool
	// Secrets made with `kubectl create secret --from-file` often end
	// in a newline that is not part of the value.
	if b, _, err = read(contract.SecretKeyUsername); err != nil {
		return nil, err
	}
	c.username = strings.TrimSpace(string(b))
	if b, _, err = read(contract.SecretKeyPassword); err != nil {
		return nil, err
	}
	c.password = strings.TrimRight(string(b), "\r\n")
	if c.sshKey, _, err = read(contract.SecretKeySSHKey); err != nil {
		return nil, err
	}
	if _, ok, err = read(contract.SecretKeyKnownHosts); err != nil {
		return nil, err
	} else if ok {
		c.knownHostsFile = filepath.Join(dir, contract.SecretKeyKnownHosts)
	}
	if b, ok, err = read(contract.SecretKeyInsecureIgnoreHostKey); err != nil {
		return nil, err
	} else if ok {
		v := strings.TrimSpace(string(b))
		c.insecureHost, err = strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("key %q of the credentials Secret is %q: use \"true\" or \"false\"", contract.SecretKeyInsecureIgnoreHostKey, v)
		}
	}
	return c, nil
}

// authFor builds the go-git auth method for the endpoint from the Secret
// (preferred) or from credentials embedded in the URL.
func authFor(ep *transport.Endpoint, clean string, userinfo *url.Userinfo, c *credentials, opts Options) (transport.AuthMethod, error) {
	warn := func(format string, args ...any) {
		fmt.Fprintf(opts.Log, "WARNING: "+format+"\n", args...)
	}
	switch ep.Protocol {
	case "http", "https":
		user, pass := c.username, c.password
		if user == "" && pass == "" && userinfo != nil {
			user = userinfo.Username()
			pass, _ = userinfo.Password()
		}
		if ep.Protocol == "http" {
			if pass != "" {
				warn("%s uses plain http://: the repository and the credentials travel unencrypted", clean)
			} else {
				warn("%s uses plain http://: the repository travels unencrypted and unauthenticated", clean)
			}
		}
		if user == "" && pass == "" {
			return nil, nil
		}
		if user == "" {
			// Token-only Secrets: hosting services accept any user name
			// with a token as the password, but not an empty one.
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil
	}

	// SSH.
	user := ep.User
	if user == "" {
		user = c.username
	}
	if user == "" {
		user = "git"
	}
	var method gitssh.AuthMethod
	switch {
	case len(c.sshKey) > 0:
		signer, err := ssh.ParsePrivateKey(c.sshKey)
		if _, ok := err.(*ssh.PassphraseMissingError); ok {
			return nil, fmt.Errorf("key %q of the credentials Secret is protected by a passphrase: store an unencrypted key", contract.SecretKeySSHKey)
		}
		if err != nil {
			return nil, fmt.Errorf("key %q of the credentials Secret is not a valid private key: %v", contract.SecretKeySSHKey, err)
		}
		method = &gitssh.PublicKeys{User: user, Signer: signer}
	case c.password != "":
		method = &gitssh.Password{User: user, Password: c.password}
	case c.dir == "":
		return nil, fmt.Errorf("SSH repository %s needs a Secret with %q and %q: set the Git context's secretRef", clean, contract.SecretKeySSHKey, contract.SecretKeyKnownHosts)
	default:
		return nil, fmt.Errorf("SSH repository %s needs key %q in the credentials Secret", clean, contract.SecretKeySSHKey)
	}

	host := ep.Host
	port := ep.Port
	if port == 0 {
		port = 22
	}
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	var callback ssh.HostKeyCallback
	var algorithms []string
	switch {
	case c.insecureHost:
		warn("SSH host key of %s is NOT verified (%s is \"true\" in the credentials Secret): a man in the middle could serve any repository", hostPort, contract.SecretKeyInsecureIgnoreHostKey)
		callback = ssh.InsecureIgnoreHostKey()
	case c.knownHostsFile != "":
		db, err := gitssh.NewKnownHostsDb(c.knownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("key %q of the credentials Secret cannot be parsed: %v", contract.SecretKeyKnownHosts, err)
		}
		callback = explainHostKey(db.HostKeyCallback(), hostPort)
		algorithms = db.HostKeyAlgorithms(hostPort)
	default:
		return nil, &permanentError{fmt.Sprintf("cannot verify the SSH host key of %s: add key %q (e.g. from `ssh-keyscan -p %d %s`) to the credentials Secret, or set %q to \"true\" to skip verification", hostPort, contract.SecretKeyKnownHosts, port, host, contract.SecretKeyInsecureIgnoreHostKey)}
	}
	switch m := method.(type) {
	case *gitssh.PublicKeys:
		m.HostKeyCallback, m.HostKeyAlgorithms = callback, algorithms
	case *gitssh.Password:
		m.HostKeyCallback, m.HostKeyAlgorithms = callback, algorithms
	}
	return &sshAuth{AuthMethod: method, timeout: opts.DialTimeout}, nil
}

// sshAuth adds a connect timeout, which go-git's SSH transport otherwise
// leaves unbounded: a silently dropped SYN would hang the init container.
type sshAuth struct {
	gitssh.AuthMethod
	timeout time.Duration
}

func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	cfg, err := a.AuthMethod.ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = a.timeout
	return cfg, nil
}

// hostKeyError is a refused SSH host key; it is never retried.
type hostKeyError struct{ msg string }

func (e *hostKeyError) Error() string { return e.msg }

// explainHostKey turns knownhosts' errors into messages that say what to fix.
func explainHostKey(cb ssh.HostKeyCallback, hostPort string) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 {
				return &hostKeyError{fmt.Sprintf("SSH host %s is not in known_hosts of the credentials Secret (its %s key has fingerprint %s): add its key to %q", hostPort, key.Type(), ssh.FingerprintSHA256(key), contract.SecretKeyKnownHosts)}
			}
			return &hostKeyError{fmt.Sprintf("SSH host key of %s (%s %s) does not match known_hosts of the credentials Secret: the server's key changed or someone is intercepting the connection", hostPort, key.Type(), ssh.FingerprintSHA256(key))}
		}
		return &hostKeyError{fmt.Sprintf("SSH host key of %s refused: %v", hostPort, err)}
	}
}
