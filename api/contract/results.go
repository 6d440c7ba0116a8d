package contract

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The results interface: how an agent image reports what its agent did.
//
// The agent container prints, as the last line of its output (stdout), one
// line that starts with ResultsPrefix followed by an AgentResults object as
// JSON, without a line break inside it. The controller reads the agent
// container's log (it keeps the rest of that log as the Task's transcript),
// takes the last such line that starts at the beginning of a line and
// copies what it holds, bounded and checked, into the Task's
// status.results. Results are data: nothing in them changes the Task's
// phase, exit code or any other status field. The phase still comes from
// the container's exit code.
//
// An agent image that prints no results line leaves status.results without
// a summary, usage or Git facts; the transcript is kept all the same.
//
// Everything the agent's tools print must be kept from starting a line with
// ResultsPrefix (agent-opencode indents all of it), so that only the image's
// own last line is taken.
const (
	// ResultsVersion identifies the shape of AgentResults.
	ResultsVersion = "kubeopencode.io/results/v1"
	// ResultsPrefix starts the results line.
	ResultsPrefix = "kubeopencode.io/results: "
	// MaxResultsLine is the longest results line the controller reads; a
	// longer one is ignored (and kept in the transcript as text).
	MaxResultsLine = 64 * 1024
	// MaxSummaryBytes is the most of the final answer kept in the summary.
	MaxSummaryBytes = 4096
	// MaxPushedBranches is the most pushed branches kept per repository.
	MaxPushedBranches = 20

	// EnvGitContexts, on the agent container, lists the Git contexts the
	// agent works in as a JSON array of GitContext, so that an agent image
	// can report on each checkout.
	EnvGitContexts = "KUBEOPENCODE_GIT_CONTEXTS"

	// EnvCredentialNames, on the agent container, names the environment
	// variables that hold the Agent's credentials, comma-separated, so that
	// an agent image can keep their values out of what it prints whatever
	// they are called.
	EnvCredentialNames = "KUBEOPENCODE_CREDENTIAL_ENV"
)

// GitContext is one entry of EnvGitContexts.
type GitContext struct {
	// MountPath is where the agent container sees the checkout.
	MountPath string `json:"mountPath"`
	// Repository is the Git context's repository URL.
	Repository string `json:"repository"`
	// Checkout says whether MountPath is the checkout's top directory with
	// its .git; false when the Git context mounts only a path inside the
	// repository, where no Git facts can be read.
	Checkout bool `json:"checkout"`
}

// AgentResults is what the results line holds.
type AgentResults struct {
	Version string `json:"version"`
	// Summary is the agent's final answer (at most MaxSummaryBytes, cut at
	// a character boundary; TruncateUTF8 marks the cut).
	Summary string `json:"summary,omitempty"`
	// PullRequestURL is the pull request the agent opened or named, by the
	// rule of the agent image (agent-opencode: the last pull or merge
	// request URL in the model's text or its tools' output).
	PullRequestURL string `json:"pullRequestURL,omitempty"`
	// Repositories are the Git facts of each checkout of EnvGitContexts.
	Repositories []RepositoryResult `json:"repositories,omitempty"`
	// Usage is the model usage summed over the run.
	Usage *Usage `json:"usage,omitempty"`
}

// RepositoryResult is what the agent left in one Git context's checkout.
type RepositoryResult struct {
	// MountPath is the Git context's mount path (from EnvGitContexts).
	MountPath string `json:"mountPath"`
	// Head is the commit HEAD points to when the agent ended.
	Head string `json:"head,omitempty"`
	// Base is the commit HEAD pointed to when the agent started (the one
	// git-init checked out); the diff counts are against it.
	Base string `json:"base,omitempty"`
	// Dirty: the worktree or index holds changes not committed, untracked
	// files included (ignored files are not).
	Dirty bool `json:"dirty,omitempty"`
	// FilesChanged, Insertions and Deletions compare the worktree, commits
	// and uncommitted changes alike, with Base (git diff --shortstat Base).
	FilesChanged int64 `json:"filesChanged,omitempty"`
	Insertions   int64 `json:"insertions,omitempty"`
	Deletions    int64 `json:"deletions,omitempty"`
	// PushedBranches are the branches of the checkout's origin remote that,
	// when the agent ended, pointed at a commit the agent made, as the
	// remote itself reports them (git ls-remote).
	PushedBranches []PushedBranch `json:"pushedBranches,omitempty"`
	// Error says why some facts are missing.
	Error string `json:"error,omitempty"`
}

// PushedBranch is a branch on the remote and its commit there.
type PushedBranch struct {
	Name   string `json:"name"`
	Commit string `json:"commit"`
}

// Usage is the model usage of a run, summed over its steps.
type Usage struct {
	InputTokens      int64 `json:"inputTokens,omitempty"`
	OutputTokens     int64 `json:"outputTokens,omitempty"`
	ReasoningTokens  int64 `json:"reasoningTokens,omitempty"`
	CacheReadTokens  int64 `json:"cacheReadTokens,omitempty"`
	CacheWriteTokens int64 `json:"cacheWriteTokens,omitempty"`
	// Steps is the number of model steps (requests answered).
	Steps int64 `json:"steps,omitempty"`
	// CostUSD is the cost in US dollars as the agent computes it.
	CostUSD float64 `json:"costUSD,omitempty"`
}

// ResultsLine formats r as the results line (with its newline).
func ResultsLine(r *AgentResults) (string, error) {
	r.Version = ResultsVersion
	data, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	// json.Marshal escapes every control character, so the line holds no
	// line break of its own.
	return ResultsPrefix + string(data) + "\n", nil
}

// ParseResultsLine reads a line of the agent's log (without its newline).
// ok is false when the line is not a results line; err is set when it is one
// that cannot be read.
func ParseResultsLine(line string) (r *AgentResults, ok bool, err error) {
	rest, ok := strings.CutPrefix(line, ResultsPrefix)
	if !ok {
		return nil, false, nil
	}
	if len(line) > MaxResultsLine {
		return nil, true, fmt.Errorf("the results line is %d bytes, more than the %d the controller reads", len(line), MaxResultsLine)
	}
	r = &AgentResults{}
	if err := json.Unmarshal([]byte(rest), r); err != nil {
		return nil, true, fmt.Errorf("the results line is not valid JSON: %v", err)
	}
	if r.Version != ResultsVersion {
		return nil, true, fmt.Errorf("results version %q is not supported (this controller reads %q)", r.Version, ResultsVersion)
	}
	return r, true, nil
}

// TruncateUTF8 returns s when it holds at most max bytes; otherwise its
// longest prefix, cut at a character boundary, that fits in max bytes
// together with a marker saying how much was cut.
func TruncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	marker := func(n int) string { return fmt.Sprintf("\n… [%d more bytes cut]", n) }
	keep := max - len(marker(len(s)))
	if keep < 0 {
		keep = 0
	}
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + marker(len(s)-keep)
}
