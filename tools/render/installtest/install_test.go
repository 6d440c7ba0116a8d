// Package installtest applies the rendered install stream to a fresh API
// server with kubectl, as a user installs KubeOpenCode.
package installtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubeopencode/kubeopencode/tools/cluster/envtest"
	"github.com/kubeopencode/kubeopencode/tools/images"
	"github.com/kubeopencode/kubeopencode/tools/render"
)

const root = "../../.."

// installFiles are the manifests //:install_manifests holds (and the
// documented render command takes).
func installFiles(t *testing.T) []render.File {
	t.Helper()
	files, err := render.Collect([]string{filepath.Join(root, "manifests")})
	require.NoError(t, err)
	out := render.InstallFiles(files)
	require.NotEmpty(t, out)
	return out
}

func renderer() render.Renderer {
	r := render.Renderer{Repository: "ghcr.io/kubeopencode", Digests: map[string]string{}}
	for _, name := range images.Names() {
		r.Digests[name] = "sha256:" + strings.Repeat("ab", 32)
	}
	return r
}

// kubectl runs the host's kubectl against cfg.
func kubectl(t *testing.T, cfg *rest.Config, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("kubectl")
	require.NoError(t, err, "kubectl is needed on PATH (Debian package kubectl; tools/test.sh installs it)")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	c := clientcmdapi.NewConfig()
	c.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	c.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	c.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	c.CurrentContext = "envtest"
	require.NoError(t, clientcmd.WriteToFile(*c, kubeconfig))
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// TestRenderedStreamInstallsInOneApply renders the install manifests as
// //:manifests and `render` do, then runs `kubectl apply -f` of that one
// file on an API server without KubeOpenCode: it must succeed the first
// time, and every CRD must become Established.
func TestRenderedStreamInstallsInOneApply(t *testing.T) {
	cfg := envtest.ForTest(t)
	rendered, err := renderer().RenderFiles(installFiles(t))
	require.NoError(t, err)
	stream := filepath.Join(t.TempDir(), "kubeopencode.yaml")
	require.NoError(t, os.WriteFile(stream, render.Stream(rendered), 0o644))

	out, err := kubectl(t, cfg, "apply", "-f", stream)
	require.NoError(t, err, "kubectl apply -f kubeopencode.yaml on a fresh cluster:\n%s", out)

	out, err = kubectl(t, cfg, "wait", "--for=condition=Established", "--timeout=60s", "-f", filepath.Join(root, "manifests", "crd"))
	require.NoError(t, err, out)
	for _, crd := range []string{"tasks.kubeopencode.io", "agents.kubeopencode.io", "kubeopencodeconfigs.kubeopencode.io"} {
		assert.Contains(t, out, crd)
	}
	out, err = kubectl(t, cfg, "get", "-f", stream, "-o", "name")
	require.NoError(t, err, out)
	assert.Contains(t, out, "deployment.apps/kubeopencode-controller")
	assert.Contains(t, out, "namespace/kubeopencode-system")

	// The same manifests in the order the files come in (the controller's
	// Deployment before its Namespace) fail on a fresh namespace: the order
	// is what makes the apply above work.
	var unordered bytes.Buffer
	for _, f := range rendered {
		unordered.WriteString("---\n")
		unordered.Write(bytes.ReplaceAll(f.Content, []byte("kubeopencode-system"), []byte("kubeopencode-order-check")))
		unordered.WriteString("\n")
	}
	p := filepath.Join(t.TempDir(), "unordered.yaml")
	require.NoError(t, os.WriteFile(p, unordered.Bytes(), 0o644))
	out, err = kubectl(t, cfg, "apply", "-f", p)
	require.Error(t, err, "an unordered stream must fail, or this test proves nothing:\n%s", out)
	assert.Contains(t, out, `namespaces "kubeopencode-order-check" not found`)
}
