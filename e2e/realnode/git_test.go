package realnode_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeopencode/kubeopencode/internal/gittest"
	"github.com/kubeopencode/kubeopencode/tools/cluster"
)

// gitServers serve one repository to the pods, as git's own smart-HTTP
// backend behind basic auth and as git upload-pack over SSH with public-key
// authentication, both on the pod bridge's address of the host (a pod
// cannot reach the host's 127.0.0.1).
type gitServers struct {
	// Files of the repository's only commit on main, by path.
	Files  map[string]string
	Commit string
	// RealCommit is the tip of real.git, a repository shaped like a real
	// one (see makeRealRepo).
	RealCommit string

	httpURL            string // http://HOST:PORT/repo.git
	username, password string

	sshAddr       string // HOST:PORT
	sshURL        string // ssh://git@HOST:PORT/repo.git
	sshKeyPEM     []byte
	knownHostLine string

	root    string
	httpSrv *gittest.HTTPServer
	sshSrv  *gittest.SSHServer
}

func (g *gitServers) Close() {
	if g.httpSrv != nil {
		g.httpSrv.Close()
	}
	if g.sshSrv != nil {
		g.sshSrv.Close()
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
	if g.RealCommit, err = makeRealRepo(filepath.Join(g.root, "real.git")); err != nil {
		return nil, err
	}
	if g.httpSrv, err = gittest.StartHTTPServer(g.root, gittest.HTTPOptions{
		Host: host, Username: g.username, Password: g.password, Push: true,
	}); err != nil {
		return nil, err
	}
	g.httpURL = g.httpSrv.URL + "/repo.git"
	if g.sshSrv, err = gittest.StartSSHServer(g.root, gittest.SSHOptions{Host: host}); err != nil {
		g.Close()
		return nil, err
	}
	g.sshAddr = g.sshSrv.Addr
	g.sshURL = g.sshSrv.URL("repo.git")
	g.sshKeyPEM = g.sshSrv.ClientKeyPEM
	g.knownHostLine = g.sshSrv.KnownHostsLine()
	return g, nil
}

// pushable copies real.git to a repository of its own that the test's
// agent may push to, and returns its URL and its directory on the host.
func (g *gitServers) pushable(t *testing.T) (url, dir string) {
	t.Helper()
	name := "push-" + randomHex(6) + ".git"
	dir = filepath.Join(g.root, name)
	gittest.Git(t, g.root, "clone", "-q", "--bare", filepath.Join(g.root, "real.git"), dir)
	return g.httpSrv.URL + "/" + name, dir
}

// bridgeAddress is the IPv4 address of the pod bridge, where pods reach
// the host. The bridge exists once the node has started its first pod (the
// controller's).
func bridgeAddress() (string, error) { return cluster.PodBridgeAddress() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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
		if _, err := gittest.RunGit(work, args...); err != nil {
			return err
		}
	}
	var err error
	if g.Commit, err = gittest.RunGit(work, "rev-parse", "HEAD"); err != nil {
		return err
	}
	_, err = gittest.RunGit(g.root, "clone", "-q", "--bare", work, filepath.Join(g.root, "repo.git"))
	return err
}

// makeRealRepo creates a bare repository with what broke checkouts of real
// repositories before: large text files stored as deltas that copy from
// earlier and later parts of their base (repacked as `git gc --aggressive`
// does), absolute, relative and dangling symlinks, names Windows reserves
// (aux.c, con.txt) and an executable. It returns the commit.
func makeRealRepo(bare string) (commit string, err error) {
	defer func() {
		// The generator reports failures through testing.TB; outside a
		// test they arrive as a panic.
		if p := recover(); p != nil {
			err = fmt.Errorf("making %s: %v", bare, p)
		}
	}()
	tb := &setupTB{}
	g := gittest.NewTextGen(11)
	var fi gittest.FastImport
	var ops []gittest.FileOp
	add := func(p, mode string, data []byte) {
		ops = append(ops, gittest.FileOp{Path: p, Mode: mode, Ref: fi.Blob(data)})
	}
	lines := g.Lines(6000, "line")
	add("big/base.txt", "100644", gittest.Join(lines))
	add("big/moved.txt", "100644", gittest.Join(append(append(append([]string{}, lines[1000:1100]...), lines[0:100]...), lines[1500:]...)))
	v := g.Lines(60000, "data") // about 3 MiB
	for i, block := range []int{0, 100, 37, 500} {
		if block > 0 {
			v = g.Shuffle(v, block, 200)
		}
		add(fmt.Sprintf("big/data-%d.txt", i), "100644", gittest.Join(v))
	}
	add("links/etc", "120000", []byte("/etc"))
	add("links/hostname", "120000", []byte("/etc/hostname"))
	add("links/readme", "120000", []byte("../README.md"))
	add("links/dangling", "120000", []byte("../no/such/file"))
	add("drivers/i2c/aux.c", "100644", []byte("int aux;\n"))
	add("con.txt", "100644", []byte("con\n"))
	add("README.md", "100644", []byte("# real\n"))
	add("bin/run.sh", "100755", []byte("#!/bin/sh\necho run\n"))
	mark := fi.Commit("refs/heads/main", "", "real", ops)
	marks := fi.Import(tb, bare)
	gittest.Git(tb, bare, "repack", "-a", "-d", "-f", "-q", "--depth=50", "--window=250")
	if len(gittest.PackDeltas(tb, bare)) == 0 {
		return "", fmt.Errorf("%s holds no deltas", bare)
	}
	return marks[mark], nil
}

// setupTB lets the gittest helpers run outside a test, in TestMain.
type setupTB struct{ testing.TB }

func (setupTB) Helper()                   {}
func (setupTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (setupTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (setupTB) Errorf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (setupTB) FailNow()                  { panic("failed") }
func (setupTB) Cleanup(func())            {}
func (setupTB) TempDir() string           { d, _ := os.MkdirTemp("", "realnode-"); return d }
