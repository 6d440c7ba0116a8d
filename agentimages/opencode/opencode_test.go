package opencode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The testdata files are event streams recorded from the real OpenCode
// 1.18.18 binary (`opencode run --format json`) driven by the scripted
// model: a run that read, wrote and ran a shell command and answered; one
// whose bash call was auto-rejected (permission "ask"); one whose write and
// bash tools were denied; and one whose model endpoint answered 503.
// OpenCode exited 0 for the first three and 1 for the last.
func follow(t *testing.T, name string) (*Verdict, string) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	var out strings.Builder
	return Follow(f, &out), out.String()
}

func TestCompletedRun(t *testing.T) {
	v, out := follow(t, "completed.jsonl")
	assert.True(t, v.OK(), v.Problem)
	assert.Equal(t, []string{"read", "write", "bash"}, v.ToolCalls)
	assert.Equal(t, 4, v.Steps)
	assert.Equal(t, "All done.", v.FinalText)
	assert.Contains(t, out, `[tool bash] completed {"command":"id -u; pwd"`)
	assert.Contains(t, out, "    0\n    /tmp/ocx/ws\n", "tool outputs are in the transcript")
	assert.Contains(t, out, "[text] All done.")
}

func TestRefusedPermissionIsNotDone(t *testing.T) {
	v, out := follow(t, "permission-asked.jsonl")
	assert.False(t, v.OK(), "OpenCode exited 0, but its bash call was refused: the work was not done")
	assert.Contains(t, v.Problem, "OpenCode refused the bash tool call")
	assert.Contains(t, v.Problem, "id -u; pwd")
	assert.Contains(t, out, "rejected permission")
}

func TestDeniedToolIsNotDone(t *testing.T) {
	v, _ := follow(t, "permission-denied.jsonl")
	assert.False(t, v.OK(), "the model answered in the end, but two of its tool calls never ran")
	assert.Contains(t, v.Problem, `the model called the tool "write", which the configuration does not allow`)
	assert.Contains(t, v.Problem, `"bash"`)
}

func TestModelErrorIsExplained(t *testing.T) {
	v, out := follow(t, "model-error.jsonl")
	assert.False(t, v.OK())
	assert.Contains(t, v.Problem, "the model request failed: APIError: upstream model overloaded (HTTP 503 from http://127.0.0.1:18081/v1/chat/completions)")
	assert.Contains(t, out, "[error]")
}

func TestCutOffRunIsNotDone(t *testing.T) {
	// The stream of a run stopped after a tool call: no final answer.
	data, err := os.ReadFile(filepath.Join("testdata", "completed.jsonl"))
	require.NoError(t, err)
	lines := strings.SplitAfter(string(data), "\n")
	v := Follow(strings.NewReader(strings.Join(lines[:7], "")), &strings.Builder{})
	assert.False(t, v.OK())
	assert.Contains(t, v.Problem, `ended with "tool-calls", not with a final answer`)

	v = Follow(strings.NewReader("not json\n"), &strings.Builder{})
	assert.Equal(t, "OpenCode ran no model step", v.Problem)
}
