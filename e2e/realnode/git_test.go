package realnode_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// podBridge is the bridge tools/cluster connects the node's pods to; its
// address is the host as pods see it.
const podBridge = "kocni0"

// gitServers serve one repository to the pods, as git's own smart-HTTP
// backend behind basic auth and as git upload-pack over SSH with public-key
// authentication, both on the pod bridge's address of the host. (The
// package initimages/internal/gittest does the same on 127.0.0.1 for the
// init images' own tests; Go's internal rule keeps it out of reach here,
// and a pod could not reach 127.0.0.1 anyway.)
type gitServers struct {
	// Files of the repository's only commit on main, by path.
	Files  map[string]string
	Commit string

	httpURL            string // http://HOST:PORT/repo.git
	username, password string

	sshAddr       string // HOST:PORT
	sshURL        string // ssh://git@HOST:PORT/repo.git
	sshKeyPEM     []byte
	knownHostLine string

	root    string
	httpSrv *http.Server
	sshLn   net.Listener
}

func (g *gitServers) Close() {
	if g.httpSrv != nil {
		g.httpSrv.Close()
	}
	if g.sshLn != nil {
		g.sshLn.Close()
	}
}

func startGitServers(dir string) (*gitServers, error) {
	host, err := bridgeAddress()
	if err != nil {
		return nil, err
	}
	g := &gitServers{
		root: filepath.Join(dir, "git"),
		Files: map[string]string{
			"README.md":       "# e2e repository\n",
			"src/greeting.go": "package src\n\nconst Greeting = \"hello\"\n",
			"run.sh":          "#!/bin/sh\necho run\n",
		},
		username: "e2e-user",
		password: randomHex(12),
	}
	if err := g.makeRepo(); err != nil {
		return nil, err
	}
	if err := g.serveHTTP(host); err != nil {
		return nil, err
	}
	if err := g.serveSSH(host); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// bridgeAddress is the IPv4 address of the pod bridge. The bridge exists
// once the node has started its first pod (the controller's).
func bridgeAddress() (string, error) {
	ifc, err := net.InterfaceByName(podBridge)
	if err != nil {
		return "", fmt.Errorf("pod bridge %s: %w", podBridge, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("pod bridge %s has no IPv4 address", podBridge)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// gitEnv is a git environment free of user and system configuration, with
// every repository trusted (the test runs as root, git-init as 65532).
func gitEnv(home string) []string {
	return append(os.Environ(),
		"HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com",
		"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com",
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*",
	)
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// makeRepo creates root/repo.git with one commit holding Files.
func (g *gitServers) makeRepo() error {
	work := filepath.Join(g.root, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	for p, content := range g.Files {
		full := filepath.Join(work, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			return err
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "e2e"}} {
		if _, err := git(work, args...); err != nil {
			return err
		}
	}
	var err error
	if g.Commit, err = git(work, "rev-parse", "HEAD"); err != nil {
		return err
	}
	_, err = git(g.root, "clone", "-q", "--bare", work, filepath.Join(g.root, "repo.git"))
	return err
}

func (g *gitServers) serveHTTP(host string) error {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return err
	}
	backend := &cgi.Handler{Path: gitPath, Args: []string{"http-backend"}, Env: []string{
		"GIT_PROJECT_ROOT=" + g.root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + g.root,
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*",
	}}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	g.httpSrv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != g.username || p != g.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	})}
	go func() { _ = g.httpSrv.Serve(ln) }()
	g.httpURL = "http://" + ln.Addr().String() + "/repo.git"
	return nil
}

func (g *gitServers) serveSSH(host string) error {
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return err
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		return err
	}
	g.sshKeyPEM = pem.EncodeToMemory(block)
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		return err
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if string(key.Marshal()) == string(allowed.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("key not authorized")
	}}
	cfg.AddHostKey(hostSigner)
	if g.sshLn, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
		return err
	}
	g.sshAddr = g.sshLn.Addr().String()
	g.sshURL = "ssh://git@" + g.sshAddr + "/repo.git"
	g.knownHostLine = knownhosts.Line([]string{knownhosts.Normalize(g.sshAddr)}, hostSigner.PublicKey()) + "\n"
	go func() {
		for {
			conn, err := g.sshLn.Accept()
			if err != nil {
				return
			}
			go g.serveSSHConn(conn, cfg)
		}
	}()
	return nil
}

func (g *gitServers) serveSSHConn(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go g.sshSession(ch, chReqs)
	}
}

// sshSession serves one "exec git-upload-pack '<path>'" request.
func (g *gitServers) sshSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			if req.WantReply {
				_ = req.Reply(req.Type == "env", nil)
			}
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		status := make([]byte, 4)
		binary.BigEndian.PutUint32(status, uint32(g.uploadPack(ch, payload.Command)))
		_, _ = ch.SendRequest("exit-status", false, status)
		return
	}
}

func (g *gitServers) uploadPack(ch ssh.Channel, command string) int {
	verb, arg, _ := strings.Cut(command, " ")
	if verb != "git-upload-pack" {
		_, _ = io.WriteString(ch.Stderr(), "only git-upload-pack is served\n")
		return 1
	}
	cmd := exec.Command("git", "upload-pack", filepath.Join(g.root, filepath.Clean("/"+strings.Trim(arg, "'"))))
	cmd.Env = gitEnv(g.root)
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		return 1
	}
	// The client may keep its side open after the pack; the copy ends when
	// the pipe closes with the process.
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return 1
	}
	return 0
}
