#!/usr/bin/env bash
# Fails when generated Bazel files drifted from the sources (BUILD.bazel files
# Gazelle would change with the repository configuration go_deps gives it, a
# stale use_repo(go_deps, ...), unformatted or lint-failing Starlark, an
# invalid GitHub workflow), and on what `bazel build //...` and
# `bazel test //...` would fail on, checked without Bazel by
# tools/bazel/bzlcheck. Fix generated files with tools/bazel/update.sh, the
# rest by hand.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

tool() { go tool -modfile=tools/devtools/go.mod "$@"; }
failed=0
step() {
	local what="$1"
	shift
	echo "== $what"
	if ! "$@"; then
		echo "FAILED: $what" >&2
		failed=1
	fi
}


step "tools/bazel/go_repositories.bzl lists the modules of go.mod" \
	go run ./tools/bazel/bzlsync repo-config -check
step "tools/bazel/agent_inputs.*: the agent image's inputs as tools/images pins them" \
	go run ./tools/bazel/agentinputs -check
step "gazelle: BUILD.bazel files match the Go sources" \
	tool gazelle -mode=diff
step "MODULE.bazel: use_repo(go_deps) lists what BUILD files use" \
	go run ./tools/bazel/bzlsync use-repo -check
step "buildifier: Starlark formatted and lint-clean" \
	tool buildifier -r -mode=check -lint=warn .
step "actionlint: GitHub workflows" \
	tool actionlint .github/workflows/*.yaml
if command -v shellcheck >/dev/null; then
	step "shellcheck: tools/bazel scripts" shellcheck tools/bazel/*.sh
else
	echo "== shellcheck: not installed (apt-get install shellcheck); actionlint also checks workflow scripts with it" >&2
fi
step "labels: every label names a target that exists and is visible to its user" \
	go run ./tools/bazel/bzlcheck labels
step "scripts: no script argument expands to a path without \"/\"" \
	go run ./tools/bazel/bzlcheck scripts
step "runfiles: every go_test not tagged manual passes as bazel test runs it" \
	go run ./tools/bazel/bzlcheck runfiles
step "image definitions and workflow: Bazel targets match tools/images; the checks catch what they claim" \
	go test -count=1 ./tools/images/... ./tools/bazel/...

if [ "$failed" -ne 0 ]; then
	echo "Bazel files are out of date or would fail under Bazel (see FAILED above)." >&2
	exit 1
fi
echo "Bazel files are up to date."
