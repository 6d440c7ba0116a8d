package controller_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kubeopencode/kubeopencode/api/contract"
	"github.com/kubeopencode/kubeopencode/api/v1alpha1"
)

// resultsTasks is how many finished Tasks each phase of
// BenchmarkResultsMemory adds.
const resultsTasks = 5000

// BenchmarkResultsMemory measures what a finished Task's results and
// transcript cost the controller binary: its resident memory, settled,
// with no finished Task of the benchmark, then with 5,000 finished Tasks
// without results, then with 5,000 more whose status holds results as large
// as they can be (a 4 KiB summary, a repository with two pushed branches,
// usage, a transcript reference). docs/performance.md gives the figures.
func BenchmarkResultsMemory(b *testing.B) {
	bin := buildController(b)
	cluster := packageServer()
	kubeconfig := writeKubeconfig(b, cluster.cfg)
	ns := namespaceOn(b, cluster.c)
	createOn(b, cluster.c, newAgent(ns, v1alpha1.DefaultAgentName, nil))

	measure := func(name string) float64 {
		p := launch(b, bin, cluster, kubeconfig, name)
		rss := settledRSS(b, p.pid())
		p.stop(b)
		cluster.deleteAll(b, p.ns)
		b.Logf("%s: RSS %.1f MiB", name, rss/1024)
		return rss
	}
	none := measure("no finished Tasks")
	createFinished(b, cluster, ns, "plain", 0, resultsTasks, false)
	plain := measure("5,000 finished Tasks without results")
	createFinished(b, cluster, ns, "results", resultsTasks, 2*resultsTasks, false, fullResults)
	with := measure("5,000 more with the largest results")

	b.ReportMetric((plain-none)*1024/resultsTasks, "bytes/finished-task")
	b.ReportMetric((with-plain)*1024/resultsTasks, "bytes/finished-task-with-results")
	b.ReportMetric(((with-plain)-(plain-none))*1024/resultsTasks, "results-bytes/finished-task")
	b.ReportMetric(0, "ns/op")
}

// fullResults gives a finished Task the largest results the controller
// writes.
func fullResults(t *v1alpha1.Task) {
	commit := func(n int) string { return fmt.Sprintf("%040x", n) }
	i := len(t.Name)
	t.Status.Results = &v1alpha1.TaskResults{
		Summary:        contract.TruncateUTF8(strings.Repeat("The review found three problems in the request handler; details follow. ", 100), contract.MaxSummaryBytes),
		PullRequestURL: "https://github.com/acme/app/pull/1290",
		Repositories: []v1alpha1.RepositoryResult{{
			MountPath: "/workspace/repo", Commit: commit(i + 1), BaseCommit: commit(i), Dirty: true,
			FilesChanged: 12, Insertions: 340, Deletions: 57,
			PushedBranches: []v1alpha1.PushedBranch{{Name: "agent/review-1290", Commit: commit(i + 1)}, {Name: "agent/review-1290-fixup", Commit: commit(i + 1)}},
		}},
		Usage: &v1alpha1.TaskUsage{InputTokens: 182000, OutputTokens: 9100, CacheReadTokens: 1400000, CacheWriteTokens: 61000, TotalTokens: 1652100, Steps: 41, CostUSD: "1.316550"},
	}
	t.Status.Transcript = &v1alpha1.TranscriptStatus{ConfigMap: t.Name + "-transcript", Bytes: 48211}
}
