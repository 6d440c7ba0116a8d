// Package gittest starts real Git servers for tests: git's own smart-HTTP
// backend behind net/http/cgi and an SSH server that runs git upload-pack.
// Unlike the init binaries, test code may run the git executable.
//
// The servers listen on 127.0.0.1 unless told another host: the end-to-end
// suites serve pods, which reach the host only on the pod bridge's address.
// The New* constructors take a testing.TB and clean up after it; the
// Start* ones return errors and leave closing to the caller, for set-up
// code that runs outside a test (TestMain).
package gittest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Env is the environment for git commands run by tests: no user or system
// configuration, fixed identities and dates so that SHAs are reproducible,
// and every directory trusted (repositories may belong to another UID).
func Env(home string) []string {
	return append(os.Environ(),
		"HOME="+home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
		"GIT_AUTHOR_DATE=2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z",
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*",
	)
}

// Git runs git in dir and returns its trimmed stdout.
func Git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	out, err := RunGit(dir, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// RunGit runs git in dir with Env and returns its trimmed stdout; the error
// carries git's stderr.
func RunGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = Env(dir)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("git %s in %s: %v: %s", strings.Join(args, " "), dir, err, stderr)
	}
	return strings.TrimSpace(string(out)), nil
}

// listenHost is host, or 127.0.0.1 when empty.
func listenHost(host string) string {
	if host == "" {
		return "127.0.0.1"
	}
	return host
}

// Repo is a bare repository under a server root with a known history.
type Repo struct {
	Root string // directory served by the test servers
	Name string // path of the bare repository below Root, e.g. "repo.git"
	Dir  string // Root/Name
	// Main holds the commits of branch main, oldest first.
	Main []string
	// Feature is the tip of branch feature (one commit on top of Main[2])
	// and of refs/pull/1/head.
	Feature string
	// LightTag ("v0.1", lightweight) points to Main[1]; AnnotatedTag
	// ("v1.0", annotated) to Main[2].
	LightTag, AnnotatedTag string
	// BigFile is the path of a large random file in Main's last commit and
	// BigSHA256 its content's SHA-256 in hex, when requested.
	BigFile   string
	BigSHA256 string
}

// RepoOptions shape NewRepo's repository.
type RepoOptions struct {
	// BigFileSize adds a file of that many random bytes to the last commit.
	BigFileSize int
}

// NewRepo builds a bare repository "repo.git" with five commits on main
// (a README, a docs directory, an executable script and a symlink), a
// branch feature, a lightweight tag v0.1 and an annotated tag v1.0.
func NewRepo(tb testing.TB, opts RepoOptions) *Repo {
	tb.Helper()
	root := tb.TempDir()
	work := filepath.Join(tb.TempDir(), "work")
	require.NoError(tb, os.MkdirAll(work, 0o755))
	r := &Repo{Root: root, Name: "repo.git", Dir: filepath.Join(root, "repo.git")}
	Git(tb, work, "init", "-q", "-b", "main")
	write := func(name, content string, mode os.FileMode) {
		p := filepath.Join(work, name)
		require.NoError(tb, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(tb, os.WriteFile(p, []byte(content), mode))
	}
	for i := 1; i <= 5; i++ {
		switch i {
		case 1:
			write("README.md", "# test repository\n", 0o644)
		case 2:
			write("docs/guide.md", "guide\n", 0o644)
			write("docs/nested/deep.txt", "deep\n", 0o644)
		case 3:
			write("run.sh", "#!/bin/sh\necho hi\n", 0o755)
			require.NoError(tb, os.Symlink("README.md", filepath.Join(work, "link-to-readme")))
			require.NoError(tb, os.Symlink("docs", filepath.Join(work, "link-to-docs")))
			require.NoError(tb, os.Symlink("../../../etc", filepath.Join(work, "link-out")))
		}
		write("history.txt", strings.Repeat("line\n", i), 0o644)
		if i == 5 && opts.BigFileSize > 0 {
			big := make([]byte, opts.BigFileSize)
			_, err := rand.Read(big)
			require.NoError(tb, err)
			require.NoError(tb, os.WriteFile(filepath.Join(work, "big.bin"), big, 0o644))
			sum := sha256.Sum256(big)
			r.BigFile, r.BigSHA256 = "big.bin", hex.EncodeToString(sum[:])
		}
		Git(tb, work, "add", "-A")
		Git(tb, work, "commit", "-q", "-m", fmt.Sprintf("commit %d", i))
		r.Main = append(r.Main, Git(tb, work, "rev-parse", "HEAD"))
	}
	Git(tb, work, "tag", "v0.1", r.Main[1])
	// A tag with a branch's name: the branch must win.
	Git(tb, work, "tag", "feature", r.Main[0])
	Git(tb, work, "tag", "-a", "-m", "release 1.0", "v1.0", r.Main[2])
	r.LightTag, r.AnnotatedTag = "v0.1", "v1.0"
	Git(tb, work, "checkout", "-q", "-b", "feature", r.Main[2])
	write("feature.txt", "feature\n", 0o644)
	Git(tb, work, "add", "-A")
	Git(tb, work, "commit", "-q", "-m", "feature")
	r.Feature = Git(tb, work, "rev-parse", "HEAD")
	Git(tb, work, "checkout", "-q", "main")
	Git(tb, root, "clone", "-q", "--bare", work, r.Dir)
	// A ref outside heads and tags, like the ones hosting services keep
	// for pull requests.
	Git(tb, r.Dir, "update-ref", "refs/pull/1/head", r.Feature)
	return r
}

// HTTPOptions configure an HTTP server.
type HTTPOptions struct {
	// Host is the address to listen on; 127.0.0.1 when empty.
	Host string
	// Username and Password, when set, are required as basic auth.
	Username, Password string
	// AllowReachableSHA1 lets clients fetch any reachable commit by SHA.
	AllowReachableSHA1 bool
	// FailFirst answers that many requests with 503 before serving.
	FailFirst int32
	// Push lets clients push (git http-backend's http.receivepack).
	Push bool
	// TLS serves HTTPS with a self-signed certificate, valid for 127.0.0.1
	// only; see HTTPServer.CertFile.
	TLS bool
	// Stall makes the first StallCount pack responses (git-upload-pack;
	// 0: all) stop after StallAfter bytes of body (0: before the response
	// headers) and hang until the client goes away, like a server that
	// stalls mid-pack or never answers.
	Stall      bool
	StallAfter int
	StallCount int32
	// Trickle sends pack responses in pieces of 16 KiB with this pause
	// before each: a slow but steady server.
	Trickle time.Duration
}

// HTTPServer is git http-backend served over HTTP.
type HTTPServer struct {
	*httptest.Server
	Requests atomic.Int32
	// Stalls counts the responses that stalled.
	Stalls atomic.Int32
	stop   chan struct{} // closed when the server closes
	// CertFile is the PEM certificate of a TLS server, for SSL_CERT_FILE.
	CertFile string
}

// NewHTTPServer serves every repository below root until the test ends.
func NewHTTPServer(tb testing.TB, root string, opts HTTPOptions) *HTTPServer {
	tb.Helper()
	if opts.TLS {
		// The certificate lands in the test's temporary directory, which
		// outlives the server.
		s, err := startHTTPServer(root, opts, tb.TempDir())
		require.NoError(tb, err)
		tb.Cleanup(s.closeNow)
		return s
	}
	s, err := StartHTTPServer(root, opts)
	require.NoError(tb, err)
	tb.Cleanup(s.closeNow)
	return s
}

// closeNow closes the server without waiting for stalled responses.
func (s *HTTPServer) closeNow() {
	close(s.stop)
	s.CloseClientConnections()
	s.Close()
}

// StartHTTPServer serves every repository below root until Close. TLS
// needs NewHTTPServer, which has a place for the certificate file.
func StartHTTPServer(root string, opts HTTPOptions) (*HTTPServer, error) {
	if opts.TLS {
		return nil, errors.New("gittest: a TLS server needs NewHTTPServer")
	}
	return startHTTPServer(root, opts, "")
}

func startHTTPServer(root string, opts HTTPOptions, certDir string) (*HTTPServer, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, err
	}
	env := []string{
		"GIT_PROJECT_ROOT=" + root,
		"GIT_HTTP_EXPORT_ALL=1",
		"GIT_CONFIG_NOSYSTEM=1",
		"HOME=" + root,
	}
	cfg := [][2]string{{"safe.directory", "*"}}
	if opts.Push {
		cfg = append(cfg, [2]string{"http.receivepack", "true"})
	}
	if opts.AllowReachableSHA1 {
		cfg = append(cfg, [2]string{"uploadpack.allowReachableSHA1InWant", "true"})
	}
	env = append(env, fmt.Sprintf("GIT_CONFIG_COUNT=%d", len(cfg)))
	for i, kv := range cfg {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
	}
	backend := &cgi.Handler{Path: gitPath, Args: []string{"http-backend"}, Env: env}
	s := &HTTPServer{stop: make(chan struct{})}
	failed := atomic.Int32{}
	stalled := atomic.Int32{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Requests.Add(1)
		if failed.Load() < opts.FailFirst {
			failed.Add(1)
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return
		}
		if opts.Username != "" || opts.Password != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != opts.Username || p != opts.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		if opts.Stall && strings.HasSuffix(r.URL.Path, "/git-upload-pack") && (opts.StallCount == 0 || stalled.Add(1) <= opts.StallCount) {
			s.Stalls.Add(1)
			if opts.StallAfter == 0 {
				// Reading the request to its end lets the server notice
				// when the client hangs up.
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-s.stop:
				}
				return
			}
			sw := &stallWriter{ResponseWriter: w, left: opts.StallAfter, done: r.Context().Done(), stop: s.stop}
			backend.ServeHTTP(sw, r)
			return
		}
		if opts.Trickle > 0 && strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			backend.ServeHTTP(&trickleWriter{ResponseWriter: w, pause: opts.Trickle}, r)
			return
		}
		backend.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", net.JoinHostPort(listenHost(opts.Host), "0"))
	if err != nil {
		return nil, err
	}
	s.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}}
	if !opts.TLS {
		s.Start()
		return s, nil
	}
	s.StartTLS()
	s.CertFile = filepath.Join(certDir, "server.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(s.CertFile, cert, 0o644); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// stallWriter passes on left bytes of body, then blocks until done.
type stallWriter struct {
	http.ResponseWriter
	left int
	done <-chan struct{}
	stop <-chan struct{}
}

func (w *stallWriter) wait() {
	select {
	case <-w.done:
	case <-w.stop:
	}
}

func (w *stallWriter) Write(p []byte) (int, error) {
	if w.left <= 0 {
		w.wait()
		return 0, errors.New("client gave up")
	}
	if len(p) > w.left {
		n, err := w.ResponseWriter.Write(p[:w.left])
		w.left = 0
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		if err != nil {
			return n, err
		}
		w.wait()
		return n, errors.New("client gave up")
	}
	w.left -= len(p)
	return w.ResponseWriter.Write(p)
}

func (w *stallWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// trickleWriter writes in small pieces with a pause before each.
type trickleWriter struct {
	http.ResponseWriter
	pause time.Duration
}

func (w *trickleWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 16<<10)
		time.Sleep(w.pause)
		m, err := w.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[k:]
	}
	return n, nil
}
