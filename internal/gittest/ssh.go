package gittest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHOptions configure an SSH server.
type SSHOptions struct {
	// Host is the address to listen on; 127.0.0.1 when empty.
	Host string
}

// SSHServer serves git upload-pack over SSH for one authorized key.
type SSHServer struct {
	Addr    string        // host:port
	HostKey ssh.PublicKey // the server's host key
	// ClientKeyPEM is an unencrypted OpenSSH private key the server accepts.
	ClientKeyPEM []byte

	root     string
	listener net.Listener
	wg       sync.WaitGroup
}

// NewSSHServer serves the repositories below root until the test ends.
func NewSSHServer(tb testing.TB, root string, opts SSHOptions) *SSHServer {
	tb.Helper()
	s, err := StartSSHServer(root, opts)
	require.NoError(tb, err)
	tb.Cleanup(s.Close)
	return s
}

// StartSSHServer serves the repositories below root until Close.
func StartSSHServer(root string, opts SSHOptions) (*SSHServer, error) {
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return nil, err
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		return nil, err
	}
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		return nil, err
	}

	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", net.JoinHostPort(listenHost(opts.Host), "0"))
	if err != nil {
		return nil, err
	}
	s := &SSHServer{
		Addr:         l.Addr().String(),
		HostKey:      hostSigner.PublicKey(),
		ClientKeyPEM: pem.EncodeToMemory(block),
		root:         root,
		listener:     l,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(conn, cfg)
			}()
		}
	}()
	return s, nil
}

// Close stops accepting connections; sessions under way run to their end.
func (s *SSHServer) Close() {
	s.listener.Close()
}

// URL is the ssh:// URL of the repository at path name below the root.
func (s *SSHServer) URL(name string) string {
	return "ssh://git@" + s.Addr + "/" + name
}

// KnownHostsLine is the known_hosts entry for this server.
func (s *SSHServer) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey) + "\n"
}

// Port is the server's TCP port.
func (s *SSHServer) Port() string {
	_, port, _ := net.SplitHostPort(s.Addr)
	return port
}

func (s *SSHServer) serve(conn net.Conn, cfg *ssh.ServerConfig) {
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
		go s.session(ch, chReqs)
	}
}

func (s *SSHServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
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
		code := s.exec(ch, payload.Command)
		status := make([]byte, 4)
		binary.BigEndian.PutUint32(status, uint32(code))
		_, _ = ch.SendRequest("exit-status", false, status)
		return
	}
}

// exec runs `git-upload-pack '<path>'` against the served root.
func (s *SSHServer) exec(ch ssh.Channel, command string) int {
	verb, arg, _ := strings.Cut(command, " ")
	if verb != "git-upload-pack" {
		_, _ = io.WriteString(ch.Stderr(), "only git-upload-pack is served\n")
		return 1
	}
	path := strings.Trim(arg, "'")
	full := filepath.Join(s.root, filepath.Clean("/"+path))
	cmd := exec.Command("git", "upload-pack", full)
	cmd.Env = Env(s.root)
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		_, _ = io.WriteString(ch.Stderr(), err.Error()+"\n")
		return 1
	}
	// Not waited for: the client may keep its side open after the pack,
	// and the copy ends when the pipe closes with the process.
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 1
	}
	return 0
}
