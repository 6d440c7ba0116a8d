package argo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

func readPayload(t testing.TB, file string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "github", file))
	require.NoError(t, err)
	return body
}

// The EventSource passes on every header of the delivery, not only the
// event type and delivery id: a Sensor may filter on any of them.
func TestGitHubEventCarriesEveryHeaderGitHubSends(t *testing.T) {
	data := githubEvent(t, "pull_request")
	var ev struct {
		Headers map[string][]string `json:"headers"`
		Body    map[string]any      `json:"body"`
	}
	require.NoError(t, json.Unmarshal(data, &ev))
	body := readPayload(t, "pull_request.opened.json")
	for name, want := range map[string]string{
		"Accept":                                 "*/*",
		"Content-Type":                           "application/json",
		"Content-Length":                         fmt.Sprint(len(body)),
		"User-Agent":                             "GitHub-Hookshot/4d63a2b",
		"X-Github-Event":                         "pull_request",
		"X-Github-Delivery":                      "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		"X-Github-Hook-Id":                       "509203716",
		"X-Github-Hook-Installation-Target-Id":   "712940385",
		"X-Github-Hook-Installation-Target-Type": "repository",
		"X-Hub-Signature":                        "sha1=" + sign(newSHA1, []byte(TestWebhookSecret), body),
		"X-Hub-Signature-256":                    "sha256=" + sign(newSHA256, []byte(TestWebhookSecret), body),
	} {
		assert.Equal(t, []string{want}, ev.Headers[name], name)
	}
	assert.Len(t, ev.Headers, 11, "no header added or lost: %v", ev.Headers)
	assert.NotContains(t, ev.Headers, "Host", "Go's server moves Host out of the header map")
	// The two copies in the body, under GitHub's spelling.
	assert.Equal(t, "pull_request", ev.Body["X-GitHub-Event"])
	assert.Equal(t, "72d3162e-cc78-11e3-81ab-4c9367dc0958", ev.Body["X-GitHub-Delivery"])

	// A Sensor filter on a header that is not copied into the body passes.
	s := sensorYAML(t, `
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: hooks, namespace: ci}
spec:
  dependencies:
    - name: repo-hook
      eventSourceName: github
      eventName: hooks
      filters:
        data:
          - {path: headers.X-Github-Hook-Installation-Target-Type.0, type: string, value: ["^repository$"]}
          - {path: headers.X-Hub-Signature-256.0, type: string, value: ["^sha256="]}
  triggers:
    - template:
        name: t
        k8s:
          operation: create
          source: {resource: {apiVersion: v1, kind: ConfigMap, metadata: {generateName: hook-}, data: {hook: ""}}}
          parameters:
            - {src: {dependencyName: repo-hook, dataKey: headers.X-Github-Hook-Id.0}, dest: data.hook}
`)
	obj, err := RenderTrigger(s, "t", map[string][]byte{"repo-hook": data})
	require.NoError(t, err)
	assert.Equal(t, "509203716", obj.Object["data"].(map[string]any)["hook"])
}

// GitHubRequest parses the delivery with the HTTP server's own request
// parser; a real server receiving the same request over a socket sees the
// same headers.
func TestGitHubRequestHeadersAreWhatAServerSees(t *testing.T) {
	body := readPayload(t, "issue_comment.created.json")
	offline, err := GitHubRequest("issue_comment", "d-1", body, []byte("s3cret"))
	require.NoError(t, err)

	received := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		received <- r.Header.Clone()
	}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/github", bytes.NewReader(body))
	require.NoError(t, err)
	for name, values := range offline.Header {
		if name != "Content-Length" {
			req.Header[name] = values
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, offline.Header, <-received)
}

// The EventSource reads at most webhook.maxPayloadSize bytes (1 MiB by
// default) and answers a larger delivery with HTTP 400: a big push never
// reaches the Sensor unless the limit is raised.
func TestPushOverOneMiBIsRejectedUnlessTheLimitIsRaised(t *testing.T) {
	push := bigPush(t, DefaultMaxPayloadSize+1)
	_, err := GitHubEventData("push", "d-big", push)
	var rejected *RejectedDeliveryError
	require.True(t, errors.As(err, &rejected), "%v", err)
	assert.Equal(t, http.StatusBadRequest, rejected.Status)
	assert.Equal(t, "http: request body too large", rejected.Body)

	// Exactly at the limit passes.
	_, err = GitHubEventData("push", "d-limit", bigPush(t, DefaultMaxPayloadSize))
	require.NoError(t, err)

	req, err := GitHubRequest("push", "d-big", push, []byte(TestWebhookSecret))
	require.NoError(t, err)
	data, err := GitHubEventSource{Secret: []byte(TestWebhookSecret), MaxPayloadSize: GitHubMaxPayloadSize}.Receive(req)
	require.NoError(t, err)
	assert.Equal(t, "refs/heads/main", gjson.GetBytes(data, "body.ref").String())
	assert.Greater(t, gjson.GetBytes(data, "body.commits.#").Int(), int64(1000))
}

// bigPush inflates the recorded push delivery with more commits, as a push
// of many commits does, to exactly size bytes.
func bigPush(t testing.TB, size int64) []byte {
	t.Helper()
	body := readPayload(t, "push.json")
	commit := gjson.GetBytes(body, "commits.0").Raw
	n := int(size) / (len(commit) + 1)
	commits := "[" + strings.TrimSuffix(strings.Repeat(commit+",", n), ",") + "]"
	body, err := sjson.SetRawBytes(body, "commits", []byte(commits))
	require.NoError(t, err)
	for int64(len(body)) > size {
		n--
		commits = "[" + strings.TrimSuffix(strings.Repeat(commit+",", n), ",") + "]"
		body, err = sjson.SetRawBytes(body, "commits", []byte(commits))
		require.NoError(t, err)
	}
	// Pad the last commit's message (plain letters encode one byte each).
	last := fmt.Sprintf("commits.%d.message", n-1)
	body, err = sjson.SetBytes(body, last, "Vendor the generated client")
	require.NoError(t, err)
	pad := strings.Repeat("x", int(size-int64(len(body))))
	body, err = sjson.SetBytes(body, last, "Vendor the generated client"+pad)
	require.NoError(t, err)
	require.Equal(t, size, int64(len(body)))
	require.True(t, json.Valid(body))
	return body
}

func TestSignatureIsChecked(t *testing.T) {
	body := readPayload(t, "pull_request.opened.json")
	for _, tc := range []struct {
		name   string
		secret string
		edit   func(r *http.Request)
		want   string
	}{
		{name: "wrong secret", secret: "another secret", want: "payload signature check failed"},
		{name: "unsigned", edit: func(r *http.Request) {
			r.Header.Del("X-Hub-Signature-256")
			r.Header.Del("X-Hub-Signature")
		}, want: "missing signature"},
		{name: "SHA-1 only is still checked", secret: "another secret", edit: func(r *http.Request) {
			r.Header.Del("X-Hub-Signature-256")
		}, want: "payload signature check failed"},
		{name: "form encoded", edit: func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}, want: `unsupported Content-Type "application/x-www-form-urlencoded"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret := tc.secret
			if secret == "" {
				secret = TestWebhookSecret
			}
			req, err := GitHubRequest("pull_request", "d-1", body, []byte(secret))
			require.NoError(t, err)
			if tc.edit != nil {
				tc.edit(req)
			}
			_, err = GitHubEventSource{Secret: []byte(TestWebhookSecret)}.Receive(req)
			var rejected *RejectedDeliveryError
			require.True(t, errors.As(err, &rejected), "%v", err)
			assert.Contains(t, rejected.Body, tc.want)
		})
	}
}

// The EventSource decodes and re-encodes the body: keys sorted, HTML
// characters escaped, numbers through float64.
func TestBodyIsReencodedAsTheEventSourceDoes(t *testing.T) {
	data, err := GitHubEventData("issues", "d-1", []byte(`{"z":1,"a":"<b>&","id":2184467201,"big":9007199254740993,"f":0.5}`))
	require.NoError(t, err)
	body := gjson.GetBytes(data, "body").Raw
	assert.True(t, strings.HasPrefix(body, `{"X-GitHub-Delivery":"d-1","X-GitHub-Event":"issues","a":"\u003cb\u003e\u0026","big":9007199254740992,"f":0.5,"id":2184467201,"z":1}`), body)
}
