package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// inputs lists the WebhookTrigger files in testdata (golden files excluded).
func inputs(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(t, err)
	var out []string
	for _, f := range all {
		if !strings.HasSuffix(f, ".golden.yaml") {
			out = append(out, f)
		}
	}
	require.NotEmpty(t, out)
	return out
}

// TestGolden converts every testdata/NAME.yaml and compares the manifests
// with NAME.golden.yaml and the report with NAME.report.golden.txt. Run
// `go test ./tools/migrate-webhooktrigger/ -update` to accept new output;
// internal/argo's schema test validates every golden manifest.
func TestGolden(t *testing.T) {
	for _, in := range inputs(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"-f", in, "--allow-partial"}, nil, &stdout, &stderr)
			require.Equal(t, 0, code, stderr.String())
			compareGolden(t, filepath.Join("testdata", name+".golden.yaml"), stdout.Bytes())
			compareGolden(t, filepath.Join("testdata", name+".report.golden.txt"), stderr.Bytes())
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file: run go test ./tools/migrate-webhooktrigger/ -update")
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); if the change is intended, run with -update:\n%s", path, diff)
	}
}

func TestUntranslatableRulesFailWithoutAllowPartial(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.yaml")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-f", filepath.Join("testdata", "untranslatable.yaml"), "-o", out}, nil, &stdout, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), `NOT TRANSLATED: WebhookTrigger ci/mixed rule self-review: filter: "body.pull_request.user.login == body.sender.login"`)
	assert.Contains(t, stderr.String(), `"size(body.commits) > 3" uses size()`)
	assert.Contains(t, stderr.String(), `function "shout" not defined`)
	assert.Contains(t, stderr.String(), "concurrencyPolicy: no Argo equivalent")
	assert.Contains(t, stderr.String(), "5 item(s) NOT TRANSLATED; nothing was written")
	assert.NoFileExists(t, out, "a partial migration must not be written without --allow-partial")
	assert.Empty(t, stdout.String())
}

func TestTranslatableInputWritesFileAndExitsZero(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.yaml")
	var stdout, stderr bytes.Buffer
	code := run([]string{
		"-f", filepath.Join("testdata", "github-review.yaml"), "-o", out,
		"--repository", "example-org/service", "--webhook-url", "https://hooks.example.net",
	}, nil, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Contains(t, string(data), "url: https://hooks.example.net")
	assert.Contains(t, string(data), "owner: example-org")
	assert.Contains(t, string(data), "- service")
	assert.NotContains(t, stderr.String(), "placeholder")
	assert.NotContains(t, stderr.String(), "NOT TRANSLATED")
}

func TestUsageErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, run(nil, nil, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "usage: migrate-webhooktrigger -f")

	stderr.Reset()
	assert.Equal(t, 2, run([]string{"-f", "x.yaml", "--repository", "no-slash"}, nil, &stdout, &stderr))
	assert.Contains(t, stderr.String(), `--repository "no-slash" must be owner/name`)

	stderr.Reset()
	assert.Equal(t, 1, run([]string{"-f", filepath.Join("testdata", "does-not-exist.yaml")}, nil, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "does-not-exist.yaml")
}

func TestReadsStdin(t *testing.T) {
	in := strings.NewReader(`
apiVersion: kubeopencode.io/v1alpha1
kind: WebhookTrigger
metadata: {name: piped}
spec:
  auth: {hmac: {secretRef: {name: s, key: k}}}
  rules:
    - name: all-pushes
      filter: 'headers["x-github-event"] == "push"'
      resourceTemplate: {task: {description: "Summarise the push."}}
`)
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"-f", "-"}, in, &stdout, &stderr), stderr.String())
	assert.Contains(t, stdout.String(), "kind: Sensor")
	assert.Contains(t, stdout.String(), "description: Summarise the push.")
}
