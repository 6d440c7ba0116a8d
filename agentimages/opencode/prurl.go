package opencode

import "regexp"

// MaxPullRequestURL is the longest pull request URL taken.
const MaxPullRequestURL = 2048

// pullRequestURL matches the pull and merge request URLs of the common
// forges, over https only:
//
//	https://HOST/OWNER/REPO/pull/N                      GitHub, GitHub Enterprise
//	https://HOST/OWNER/REPO/pulls/N                     Gitea, Forgejo
//	https://HOST/GROUP[/SUBGROUP...]/REPO/-/merge_requests/N   GitLab
//	https://HOST/.../pull-requests/N                    Bitbucket Cloud and Data Center
//
// The URL ends after N: whatever follows ("/files", "#discussion", a full
// stop, a closing parenthesis or quote) is not part of it.
var pullRequestURL = regexp.MustCompile(`https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?` +
	`(?:/[A-Za-z0-9._~%+-]+/[A-Za-z0-9._~%+-]+/pulls?/[0-9]+` +
	`|(?:/[A-Za-z0-9._~%+-]+)+/-/merge_requests/[0-9]+` +
	`|(?:/[A-Za-z0-9._~%+-]+)+/pull-requests/[0-9]+)`)

// LastPullRequestURL returns the last pull or merge request URL in s (see
// the package documentation for the rule), or "".
func LastPullRequestURL(s string) string {
	last := ""
	for _, m := range pullRequestURL.FindAllStringIndex(s, -1) {
		if m[1]-m[0] > MaxPullRequestURL {
			continue
		}
		// The number must end there: "pull/12abc" is no pull request.
		if m[1] < len(s) && isWordByte(s[m[1]]) {
			continue
		}
		last = s[m[0]:m[1]]
	}
	return last
}

func isWordByte(b byte) bool {
	return b == '_' || b == '-' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}
