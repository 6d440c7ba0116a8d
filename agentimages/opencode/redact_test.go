package opencode

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
)

const (
	githubToken  = "ghp_R8xk2Lq9ZtV4mN7pW1sY6cB3dF0hJ5aE"
	anthropicKey = "sk-ant-api03-Qm4xT9vL2pK8wR6zN1cY5bH7jD3fG0sA"
	// dbPassword needs JSON escapes: a quote, a backslash and the
	// characters Go escapes for HTML.
	dbPassword = `Pa"ss\w0rd&<dev>`
	// deployKey is a private key: several lines.
	deployKey = "-----BEGIN OPENSSH PRIVATE KEY-----\n" +
		"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n" +
		"QyNTUxOQAAACBvZ2l0aHViLWRlcGxveS1rZXktZm9yLXRlc3RzLW9ubHktMDEyMzQ1Njc4\n" +
		"-----END OPENSSH PRIVATE KEY-----\n"
)

var agentEnv = []string{
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"HOME=/home/agent",
	"WORKSPACE_DIR=/workspace/repository",
	"GITHUB_TOKEN=" + githubToken,
	"ANTHROPIC_API_KEY=" + anthropicKey,
	"db_password=" + dbPassword,
	"GIT_SSH_DEPLOY_KEY=" + deployKey,
	// Named by the controller, whatever the name says.
	contract.EnvCredentialNames + "=JIRA_BEARER, VAULT_ROLE_ID",
	"JIRA_BEARER=jira-7c1e9a40-5b2d",
	"VAULT_ROLE_ID=role-0f6b2a91c8",
	// Too short to be taken: they would redact ordinary words.
	"DEBUG_TOKEN=true",
	"FEATURE_KEY=on",
	"JIRA_SITE=jira-is-not-secret",
}

func TestRedactorRemovesTheEnvironmentsCredentials(t *testing.T) {
	red := NewRedactor(agentEnv)
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "export GITHUB_TOKEN=" + githubToken + "; curl -H 'x-api-key: " + anthropicKey + "'",
			"export GITHUB_TOKEN=" + Redacted + "; curl -H 'x-api-key: " + Redacted + "'"},
		{"case of the name does not matter", "psql password=" + dbPassword + " ok", "psql password=" + Redacted + " ok"},
		{"named by the controller", "Authorization: Bearer jira-7c1e9a40-5b2d, role role-0f6b2a91c8",
			"Authorization: Bearer " + Redacted + ", role " + Redacted},
		{"repeated", githubToken + githubToken + " " + githubToken, Redacted + " " + Redacted},
		{"short values and other variables stay", "DEBUG_TOKEN=true FEATURE_KEY=on in /home/agent, jira-is-not-secret",
			"DEBUG_TOKEN=true FEATURE_KEY=on in /home/agent, jira-is-not-secret"},
		{"the list of credential names stays", "JIRA_BEARER, VAULT_ROLE_ID", "JIRA_BEARER, VAULT_ROLE_ID"},
		{"a private key whole", "key:\n" + deployKey + "done", "key:\n" + Redacted + "done"},
		{"a private key printed with CRLF", strings.ReplaceAll(deployKey, "\n", "\r\n"),
			strings.Repeat(Redacted+"\r\n", 4)},
		{"URL userinfo", "git clone https://x-access-token:ghs_unknownToken123@github.com/acme/api.git",
			"git clone https://" + Redacted + "@github.com/acme/api.git"},
		{"URL userinfo with an unencoded at sign", "remote: https://bot:p@ss@word@gitlab.example.com/g/p.git/info/refs",
			"remote: https://" + Redacted + "@gitlab.example.com/g/p.git/info/refs"},
		{"addresses without userinfo stay", "mail agent@example.com, git@github.com:acme/api.git, https://github.com/acme/api?ref=a@b",
			"mail agent@example.com, git@github.com:acme/api.git, https://github.com/acme/api?ref=a@b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, red.Redact(tc.in))
		})
	}
}

func TestRedactorFindsJSONEscapedCredentials(t *testing.T) {
	red := NewRedactor(agentEnv)
	cmd := map[string]string{"command": "PGPASSWORD='" + dbPassword + "' psql; echo '" + deployKey + "'"}
	// A tool call's input as OpenCode prints it (JSON.stringify: no HTML
	// escapes) and as Go's encoding/json writes it.
	noHTML := func() string {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(cmd))
		return b.String()
	}()
	withHTML, err := json.Marshal(cmd)
	require.NoError(t, err)
	for _, input := range []string{noHTML, string(withHTML)} {
		got := red.Redact(input)
		assert.NotContains(t, got, "w0rd", input)
		assert.NotContains(t, got, "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE", input)
		assert.Contains(t, got, `PGPASSWORD='`+Redacted+`' psql`)
	}
}

func TestRedactorOverlappingCredentials(t *testing.T) {
	red := NewRedactor([]string{
		"A_TOKEN=abcdefgh12345",
		"B_TOKEN=12345zyxwvut",
		"C_SECRET=prefix-secret-value",
		"D_SECRET=secret-value",
	})
	// The end of one is the start of the other: neither may be left in
	// part.
	assert.Equal(t, "<"+Redacted+">", red.Redact("<abcdefgh12345zyxwvut>"))
	assert.Equal(t, "<"+Redacted+">", red.Redact("<12345zyxwvutabcdefgh12345>"))
	// One holds the other.
	assert.Equal(t, Redacted+" "+Redacted, red.Redact("prefix-secret-value secret-value"))
}

func TestNilRedactorRemovesURLUserinfoOnly(t *testing.T) {
	var red *Redactor
	assert.Equal(t, "https://"+Redacted+"@example.com/x and "+githubToken,
		red.Redact("https://user:pw@example.com/x and "+githubToken))
	assert.Equal(t, "no credentials here", NewRedactor(nil).Redact("no credentials here"))
}

func TestTranscriptRedactsToolCalls(t *testing.T) {
	var out strings.Builder
	tr := NewTranscript(&out, NewRedactor(agentEnv))
	input, err := json.Marshal(map[string]string{"command": "gh auth login --with-token <<< " + githubToken})
	require.NoError(t, err)
	stream := event(t, "step_start", map[string]any{"type": "step-start"}) +
		toolUse(t, "bash", string(input), "token: "+githubToken+"\nkey: "+anthropicKey) +
		event(t, "step_finish", map[string]any{"type": "step-finish", "reason": "tool-calls"})
	tr.Follow(strings.NewReader(stream))
	require.NoError(t, tr.CopyLines(strings.NewReader("debug: using "+anthropicKey+"\n"), "[stderr] "))
	for _, secret := range []string{githubToken, anthropicKey, githubToken[:12], anthropicKey[:16]} {
		assert.NotContains(t, out.String(), secret)
	}
	assert.Contains(t, out.String(), Indent+"token: "+Redacted+"\n")
	assert.Contains(t, out.String(), "[stderr] debug: using "+Redacted+"\n")
}
