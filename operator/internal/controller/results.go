package controller

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strings"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// Results are what the agent container printed: data from a program the
// model may have steered, never instructions. sanitizeResults copies only
// the fields of v1alpha1.TaskResults, each checked and bounded so that the
// status write cannot fail validation, and nothing else of the Task's
// status can be reached from them.

var (
	commitRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	// branchRE is what git check-ref-format allows in a branch name, less
	// the rare characters that would only serve to confuse a reader.
	branchRE = regexp.MustCompile(`^[A-Za-z0-9._/+@-]{1,255}$`)
)

const maxTokens = int64(1) << 53

func sanitizeResults(in *contract.AgentResults, repos []v1alpha1.RepositoryStatus) *v1alpha1.TaskResults {
	out := &v1alpha1.TaskResults{}
	var problems []string
	if in.Summary != "" {
		out.Summary = contract.TruncateUTF8(sanitizeText(in.Summary, true), contract.MaxSummaryBytes)
	}
	if in.PullRequestURL != "" {
		if u, ok := pullRequestURL(in.PullRequestURL); ok {
			out.PullRequestURL = u
		} else {
			problems = append(problems, "the pull request URL the agent reported is not an https URL and was left out")
		}
	}
	known := map[string]bool{}
	for _, r := range repos {
		known[r.MountPath] = true
	}
	seen := map[string]bool{}
	for _, r := range in.Repositories {
		if !known[r.MountPath] {
			problems = append(problems, fmt.Sprintf("results for %q, which is not a Git context of the Task, were left out", bounded(sanitizeText(r.MountPath, false), 200)))
			continue
		}
		if seen[r.MountPath] {
			problems = append(problems, fmt.Sprintf("a second result for %q was left out", bounded(sanitizeText(r.MountPath, false), 200)))
			continue
		}
		seen[r.MountPath] = true
		rr := v1alpha1.RepositoryResult{
			MountPath:    r.MountPath,
			Dirty:        r.Dirty,
			FilesChanged: clamp(r.FilesChanged),
			Insertions:   clamp(r.Insertions),
			Deletions:    clamp(r.Deletions),
			Error:        bounded(sanitizeText(r.Error, false), 1024),
		}
		if commitRE.MatchString(r.Head) {
			rr.Commit = r.Head
		} else if r.Head != "" {
			rr.Error = joinProblem(rr.Error, "the reported HEAD is not a commit ID")
		}
		if commitRE.MatchString(r.Base) {
			rr.BaseCommit = r.Base
		}
		for _, b := range r.PushedBranches {
			if len(rr.PushedBranches) == contract.MaxPushedBranches {
				rr.Error = joinProblem(rr.Error, fmt.Sprintf("more than %d pushed branches: the rest are left out", contract.MaxPushedBranches))
				break
			}
			name := strings.TrimPrefix(b.Name, "refs/heads/")
			if !branchRE.MatchString(name) || !commitRE.MatchString(b.Commit) {
				rr.Error = joinProblem(rr.Error, "a pushed branch with an invalid name or commit was left out")
				continue
			}
			rr.PushedBranches = append(rr.PushedBranches, v1alpha1.PushedBranch{Name: name, Commit: b.Commit})
		}
		out.Repositories = append(out.Repositories, rr)
		if len(out.Repositories) == 64 {
			break
		}
	}
	if u := in.Usage; u != nil {
		tu := &v1alpha1.TaskUsage{
			InputTokens: clamp(u.InputTokens), OutputTokens: clamp(u.OutputTokens), ReasoningTokens: clamp(u.ReasoningTokens),
			CacheReadTokens: clamp(u.CacheReadTokens), CacheWriteTokens: clamp(u.CacheWriteTokens), Steps: clamp(u.Steps),
		}
		tu.TotalTokens = clamp(tu.InputTokens + tu.OutputTokens + tu.ReasoningTokens + tu.CacheReadTokens + tu.CacheWriteTokens)
		if c := u.CostUSD; c >= 0 && c < 1e9 && !math.IsNaN(c) {
			tu.CostUSD = fmt.Sprintf("%.6f", c)
		} else {
			problems = append(problems, "the reported cost is not a plausible amount and was left out")
		}
		out.Usage = tu
	}
	out.Message = bounded(strings.Join(problems, "; "), 1024)
	if out.Message != "" {
		out.Message = bounded("Some results were left out: "+out.Message+".", 1024)
	}
	return out
}

// pullRequestURL accepts an https URL without credentials.
func pullRequestURL(s string) (string, bool) {
	if len(s) > 2048 || sanitizeText(s, false) != s || strings.ContainsAny(s, " \t") {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return "", false
	}
	return s, true
}

// clamp keeps a count in [0, 2^53]: each term is clamped before a sum, so
// sums of clamped terms cannot overflow either.
func clamp(n int64) int64 {
	switch {
	case n < 0:
		return 0
	case n > maxTokens:
		return maxTokens
	}
	return n
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return bounded(a+"; "+b, 1024)
}
