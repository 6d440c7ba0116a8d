package opencode

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLastPullRequestURL(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"GitHub, in a sentence", "I opened https://github.com/acme/widgets/pull/42.", "https://github.com/acme/widgets/pull/42"},
		{"GitHub Enterprise with a port", "PR: https://ghe.corp.example:8443/platform/api-server/pull/1187", "https://ghe.corp.example:8443/platform/api-server/pull/1187"},
		{"GitLab, nested groups", "Merge request: https://gitlab.com/acme/platform/backend/api/-/merge_requests/15", "https://gitlab.com/acme/platform/backend/api/-/merge_requests/15"},
		{"Gitea and Forgejo", "Created https://codeberg.org/acme/widgets/pulls/3 for review", "https://codeberg.org/acme/widgets/pulls/3"},
		{"Bitbucket", "See https://bitbucket.org/acme/widgets/pull-requests/9", "https://bitbucket.org/acme/widgets/pull-requests/9"},
		{"Markdown link", "Opened [#42](https://github.com/acme/widgets/pull/42).", "https://github.com/acme/widgets/pull/42"},
		{"quoted in JSON", `{"url":"https://github.com/acme/widgets/pull/42","state":"open"}`, "https://github.com/acme/widgets/pull/42"},
		{"in backquotes", "`https://github.com/acme/widgets/pull/42`", "https://github.com/acme/widgets/pull/42"},
		{"a page of the pull request", "https://github.com/acme/widgets/pull/42/files#diff-1", "https://github.com/acme/widgets/pull/42"},
		{"a comment's anchor", "https://github.com/acme/widgets/pull/42#issuecomment-1999", "https://github.com/acme/widgets/pull/42"},
		{"query", "https://gitlab.com/g/p/-/merge_requests/7?tab=diffs", "https://gitlab.com/g/p/-/merge_requests/7"},
		{"the last wins", "Closed https://github.com/acme/widgets/pull/41 in favour of https://gitlab.com/acme/widgets/-/merge_requests/2, see https://github.com/acme/widgets/issues/5",
			"https://gitlab.com/acme/widgets/-/merge_requests/2"},
		{"an issue", "Fixes https://github.com/acme/widgets/issues/5", ""},
		{"the list of pull requests", "https://github.com/acme/widgets/pulls", ""},
		{"the API's URL", "POST https://api.github.com/repos/acme/widgets/pulls/42", ""},
		{"git push's suggestion on GitHub", "remote: Create a pull request for 'agent/fix' on GitHub by visiting:\nremote:      https://github.com/acme/widgets/pull/new/agent/fix", ""},
		{"git push's suggestion on GitLab", "remote: To create a merge request for agent/fix, visit:\nremote:   https://gitlab.com/acme/widgets/-/merge_requests/new?merge_request%5Bsource_branch%5D=agent%2Ffix", ""},
		{"a number that goes on", "https://github.com/acme/widgets/pull/42abc", ""},
		{"plain http", "http://github.com/acme/widgets/pull/42", ""},
		{"userinfo", "https://bot:token@github.com/acme/widgets/pull/42", ""},
		{"a commit", "https://github.com/acme/widgets/commit/0123abc", ""},
		{"too long", "https://github.com/acme/" + strings.Repeat("w", MaxPullRequestURL) + "/pull/1", ""},
		{"nothing", "All done.", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, LastPullRequestURL(tc.in))
		})
	}
}

func TestFollowTakesTheLastPullRequestOfTextAndTools(t *testing.T) {
	ghOutput := "Creating pull request for agent/fix-login into main in acme/widgets\n\nhttps://github.com/acme/widgets/pull/43\n"
	stream := event(t, "step_start", map[string]any{"type": "step-start"}) +
		event(t, "text", map[string]any{"type": "text", "text": "The old attempt was https://github.com/acme/widgets/pull/12; opening a new one."}) +
		toolUse(t, "bash", `{"command":"git push -u origin agent/fix-login"}`,
			"remote: Create a pull request for 'agent/fix-login' on GitHub by visiting:\nremote:      https://github.com/acme/widgets/pull/new/agent/fix-login\n") +
		toolUse(t, "bash", `{"command":"gh pr create --fill"}`, ghOutput) +
		event(t, "step_finish", map[string]any{"type": "step-finish", "reason": "tool-calls"}) +
		event(t, "step_start", map[string]any{"type": "step-start"}) +
		event(t, "text", map[string]any{"type": "text", "text": "Opened the pull request; it fixes https://github.com/acme/widgets/issues/7."}) +
		event(t, "step_finish", map[string]any{"type": "step-finish", "reason": "stop"})
	v := Follow(strings.NewReader(stream), &strings.Builder{})
	require.True(t, v.OK(), v.Problem)
	assert.Equal(t, "https://github.com/acme/widgets/pull/43", v.PullRequestURL)
}
