package cluster

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The cache key and docs use the version constants; the binaries come from
// the go.mod files. A bump in one place only would cache new binaries under
// an old name.
func TestVersionsMatchBuildModules(t *testing.T) {
	cases := []struct {
		module, path, version string
	}{
		{"kube", "k8s.io/kubernetes", KubernetesVersion},
		{"etcd", "go.etcd.io/etcd/server/v3", EtcdVersion},
		{"kwok", "sigs.k8s.io/kwok", KwokVersion},
		{"kuberouter", "github.com/cloudnativelabs/kube-router/v2", KubeRouterVersion},
	}
	for _, tc := range cases {
		data, err := os.ReadFile(filepath.Join("..", "k8sbin", tc.module, "go.mod"))
		require.NoError(t, err)
		re := regexp.MustCompile(`(?m)^(?:require)?\s+` + regexp.QuoteMeta(tc.path) + ` (v\S+)`)
		m := re.FindSubmatch(data)
		require.NotNil(t, m, "tools/k8sbin/%s/go.mod requires %s", tc.module, tc.path)
		assert.Equal(t, tc.version, string(m[1]), "tools/k8sbin/%s/go.mod", tc.module)
	}
}

func TestCacheDirFollowsEnvironment(t *testing.T) {
	t.Setenv(CacheEnv, "/var/cache/x")
	dir, err := CacheDir()
	require.NoError(t, err)
	assert.Equal(t, "/var/cache/x/k8s/v1.37.2-etcdv3.6.16-kwokv0.8.0", dir)
}
