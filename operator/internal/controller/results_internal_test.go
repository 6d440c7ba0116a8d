package controller

import (
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

const commitA = "0123456789abcdef0123456789abcdef01234567"

func feed(rec *recording, lines ...string) {
	for _, l := range lines {
		rec.line([]byte(l))
	}
}

func TestResultsLineForgedFieldsAreIgnored(t *testing.T) {
	rec := &recording{}
	feed(rec, contract.ResultsPrefix+`{"version":"`+contract.ResultsVersion+`","summary":"ok","phase":"Completed","exitCode":0,"conditions":[{"type":"Succeeded"}]}`)
	require.NotNil(t, rec.results)
	got := rec.taskResults(nil)
	assert.Equal(t, &v1alpha1.TaskResults{Summary: "ok"}, got)
	assert.Equal(t, int64(0), rec.buf.total, "the results line is not transcript text")
}

func TestSanitizeResultsHostile(t *testing.T) {
	repos := []v1alpha1.RepositoryStatus{{MountPath: "/workspace/app"}}
	branches := make([]contract.PushedBranch, contract.MaxPushedBranches+5)
	for i := range branches {
		branches[i] = contract.PushedBranch{Name: "refs/heads/b" + strings.Repeat("x", i), Commit: commitA}
	}
	in := &contract.AgentResults{
		Summary:        strings.Repeat("é", 3000) + "\x1b[31mred\x00",
		PullRequestURL: "https://user:pw@git.example/pr/1",
		Repositories: []contract.RepositoryResult{
			{MountPath: "/workspace/app", Head: "not-a-commit", Base: commitA, FilesChanged: -4, PushedBranches: append([]contract.PushedBranch{{Name: "bad..name;rm", Commit: commitA}, {Name: "ok", Commit: "zz"}}, branches...)},
			{MountPath: "/workspace/app"},
			{MountPath: "/etc"},
		},
		Usage: &contract.Usage{InputTokens: -1, OutputTokens: math.MaxInt64, CostUSD: 1e300},
	}
	out := sanitizeResults(in, repos)
	assert.LessOrEqual(t, len(out.Summary), contract.MaxSummaryBytes)
	assert.True(t, utf8.ValidString(out.Summary))
	assert.Contains(t, out.Summary, "more bytes cut]")
	assert.Empty(t, out.PullRequestURL, "credential-bearing URL dropped")
	require.Len(t, out.Repositories, 1)
	r := out.Repositories[0]
	assert.Empty(t, r.Commit)
	assert.Equal(t, commitA, r.BaseCommit)
	assert.Equal(t, int64(0), r.FilesChanged)
	assert.Len(t, r.PushedBranches, contract.MaxPushedBranches)
	assert.Contains(t, r.Error, "not a commit ID")
	assert.Contains(t, r.Error, "invalid name or commit")
	assert.Contains(t, r.Error, "more than 20 pushed branches")
	assert.Contains(t, out.Message, `"/workspace/app"`, "duplicate mount path reported")
	assert.Contains(t, out.Message, `"/etc"`)
	assert.Contains(t, out.Message, "pull request URL")
	assert.Contains(t, out.Message, "cost")
	require.NotNil(t, out.Usage)
	assert.Empty(t, out.Usage.CostUSD)
	assert.Equal(t, int64(0), out.Usage.InputTokens)
	assert.Equal(t, maxTokens, out.Usage.OutputTokens)

	for _, c := range []float64{math.NaN(), -1, math.Inf(1)} {
		o := sanitizeResults(&contract.AgentResults{Usage: &contract.Usage{CostUSD: c}}, nil)
		assert.Empty(t, o.Usage.CostUSD, "%v", c)
	}
	o := sanitizeResults(&contract.AgentResults{Usage: &contract.Usage{CostUSD: 0.0042}, PullRequestURL: "http://git.example/pr/1"}, nil)
	assert.Equal(t, "0.004200", o.Usage.CostUSD)
	assert.Empty(t, o.PullRequestURL)
}

func TestSanitizeTextEscapes(t *testing.T) {
	assert.Equal(t, `\x1b[31mred\x00`+"\uFFFD", sanitizeText("\x1b[31mred\x00\xff", false))
	assert.Equal(t, "a\nb", sanitizeText("a\nb", true))
	assert.Equal(t, `a\x0ab`, sanitizeText("a\nb", false))
}

func TestResultsLineRules(t *testing.T) {
	good := func(s string) string {
		return contract.ResultsPrefix + `{"version":"` + contract.ResultsVersion + `","summary":"` + s + `"}`
	}
	rec := &recording{}
	feed(rec, good("first"), "text", good("second"))
	assert.Equal(t, "second", rec.taskResults(nil).Summary, "the last results line wins")

	feed(rec, contract.ResultsPrefix+"{not json")
	got := rec.taskResults(nil)
	assert.Empty(t, got.Summary, "an invalid later line leaves no results")
	assert.Contains(t, got.Message, "could not be read")

	rec = &recording{}
	feed(rec, "  "+good("indented"))
	assert.Nil(t, rec.results, "a results line not at a line start is text")
	assert.Contains(t, rec.buf.String(), "indented")

	rec = &recording{}
	feed(rec, good(strings.Repeat("x", contract.MaxResultsLine)))
	assert.Nil(t, rec.results)
	assert.Contains(t, rec.taskResults(nil).Message, "more than")
}

func TestTranscriptBufferBounded(t *testing.T) {
	var b transcriptBuffer
	line := strings.Repeat("y", 200<<10) // long lines
	var total int64
	b.add("HEAD-MARK")
	total += int64(len("HEAD-MARK") + 1)
	for total < 50<<20 {
		b.add(line)
		total += int64(len(line) + 1)
	}
	b.add("TAIL-MARK")
	total += int64(len("TAIL-MARK") + 1)
	s := b.String()
	assert.Less(t, len(s), 1<<20)
	assert.True(t, strings.HasPrefix(s, "HEAD-MARK\n"))
	assert.True(t, strings.HasSuffix(s, "TAIL-MARK\n"))
	assert.Contains(t, s, "bytes of the agent's output left out here")
	assert.True(t, b.truncated())
	assert.Equal(t, total, b.total)
}

// A stopped Task's status has no repositories (git-init's report is read
// when the Job ends): the pod's own Git contexts still let its results in.
func TestStoppedTaskKeepsRepositoryResults(t *testing.T) {
	rec := &recording{mountPaths: []string{"/workspace/repo"}}
	feed(rec, contract.ResultsPrefix+`{"version":"`+contract.ResultsVersion+`","repositories":[{"mountPath":"/workspace/repo","head":"`+commitA+`","dirty":true},{"mountPath":"/etc","head":"`+commitA+`"}]}`)
	got := rec.taskResults(nil)
	require.Len(t, got.Repositories, 1)
	assert.Equal(t, v1alpha1.RepositoryResult{MountPath: "/workspace/repo", Commit: commitA, Dirty: true}, got.Repositories[0])
	assert.Contains(t, got.Message, `"/etc", which is not a Git context of the Task`)
}
