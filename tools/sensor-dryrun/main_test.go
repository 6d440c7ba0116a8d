package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

func repo(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

// payload writes a recorded delivery body, after sjson edits, to a file.
func payload(t *testing.T, file string, edits ...any) string {
	t.Helper()
	body, err := os.ReadFile(repo("internal", "argo", "testdata", "github", file))
	require.NoError(t, err)
	for i := 0; i < len(edits); i += 2 {
		body, err = sjson.SetBytes(body, edits[i].(string), edits[i+1])
		require.NoError(t, err)
	}
	out := filepath.Join(t.TempDir(), "payload.json")
	require.NoError(t, os.WriteFile(out, body, 0o644))
	return out
}

func dryrun(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run(args, &stdout, &stderr), stderr.String())
	return stdout.String()
}

func TestShippedSensorOnAPullRequest(t *testing.T) {
	out := dryrun(t,
		"-sensor", repo("manifests", "argo-events", "sensor-github.yaml"),
		"-eventsource", repo("manifests", "argo-events", "eventsource-github.yaml"),
		"-event", "pull_request", "-payload", payload(t, "pull_request.opened.json"))
	assert.Contains(t, out, "trigger review-pull-request: fires (run 1 of 1) and creates:\n  apiVersion: kubeopencode.io/v1alpha1\n")
	assert.Contains(t, out, "    generateName: pr-review-\n")
	assert.Contains(t, out, "ref: 9f2c4e1b7a5d3c8e6f0a1b2c3d4e5f6a7b8c9d0e")
	assert.Contains(t, out, "trigger review-on-comment: does not fire (dependency expression review-comment)\n"+
		"  dependency review-comment dropped the event: data filter body.X-GitHub-Event: \"pull_request\" matches none of [\"^issue_comment$\"]\n"+
		"  the Sensor logs:\n"+
		"    debug: Event [ID 'emulated-review-comment', Source 'github', Time '")
	assert.Contains(t, out, "', Data '…the whole event…'] discarded due to filtering\n"+
		"    info: not interested in dependency review-comment (didn't pass filter)\n")
}

// The question users ask: why did this delivery create no Task?
func TestSaysWhichFilterDroppedTheDelivery(t *testing.T) {
	out := dryrun(t,
		"-sensor", repo("manifests", "argo-events", "sensor-github.yaml"),
		"-event", "pull_request", "-trigger", "review-pull-request",
		"-payload", payload(t, "pull_request.opened.json", "pull_request.author_association", "FIRST_TIME_CONTRIBUTOR"))
	assert.Contains(t, out, "trigger review-pull-request: does not fire")
	assert.Contains(t, out, `data filter body.pull_request.author_association: "FIRST_TIME_CONTRIBUTOR" matches none of ["^(OWNER|MEMBER|COLLABORATOR)$"]`)
	assert.NotContains(t, out, "review-on-comment", "-trigger selects one trigger")
}

// A push over 1 MiB: the EventSource with the default limit rejects it;
// the one the migration tool writes for push rules accepts it.
func TestLargePush(t *testing.T) {
	body, err := os.ReadFile(repo("internal", "argo", "testdata", "github", "push.json"))
	require.NoError(t, err)
	commit := gjson.GetBytes(body, "commits.0").Raw
	body, err = sjson.SetRawBytes(body, "commits", []byte("["+strings.TrimSuffix(strings.Repeat(commit+",", 1500), ",")+"]"))
	require.NoError(t, err)
	require.Greater(t, len(body), 1<<20)
	push := filepath.Join(t.TempDir(), "push.json")
	require.NoError(t, os.WriteFile(push, body, 0o644))

	out := dryrun(t, "-sensor", repo("manifests", "argo-events", "sensor-github.yaml"),
		"-eventsource", repo("manifests", "argo-events", "eventsource-github.yaml"),
		"-event", "push", "-payload", push)
	assert.Contains(t, out, `The EventSource rejects the delivery: HTTP 400 "http: request body too large". No Sensor sees it.`)

	golden := repo("tools", "migrate-webhooktrigger", "testdata", "rule-names.golden.yaml")
	out = dryrun(t, "-sensor", golden, "-eventsource", golden, "-event", "push", "-payload", push, "-trigger", "nil")
	assert.Contains(t, out, "trigger nil: fires (run 1 of 1)")
	assert.Contains(t, out, "description: Summarise the push of 0c7d2e9f4a1b6c3d8e5f0a7b2c9d4e1f6a3b8c5d at 1764410587.")
}

func TestTriggerThatCanNeverFire(t *testing.T) {
	sensor := filepath.Join(t.TempDir(), "sensor.yaml")
	data, err := os.ReadFile(repo("manifests", "argo-events", "sensor-github.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(sensor, []byte(strings.ReplaceAll(string(data), "pull-request", "2nd-review")), 0o644))
	out := dryrun(t, "-sensor", sensor, "-event", "pull_request", "-payload", payload(t, "pull_request.opened.json"))
	assert.Contains(t, out, "trigger review-2nd-review: can never fire: bad number syntax")
	assert.Contains(t, out, "the Sensor logs at start-up: failed to get dependency expression: bad number syntax")
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, run(nil, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "usage: sensor-dryrun -sensor FILE -event TYPE -payload FILE")
	stderr.Reset()
	assert.Equal(t, 1, run([]string{"-sensor", repo("manifests", "argo-events", "rbac.yaml"), "-event", "push", "-payload", "x"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "holds no Sensor")
}
