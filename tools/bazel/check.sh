#!/usr/bin/env bash
# Fails when generated Bazel files drifted from the sources: BUILD.bazel files
# Gazelle would change, a stale use_repo(go_deps, ...), unformatted or
# lint-failing Starlark, or an invalid GitHub workflow. Fix with
# tools/bazel/update.sh (workflows by hand).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

tool() { go tool -modfile=tools/devtools/go.mod "$@"; }
failed=0
step() {
	local what="$1"
	shift
	echo "== $what"
	if ! "$@"; then
		echo "FAILED: $what (run tools/bazel/update.sh and commit the result)" >&2
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
step "image definitions: Bazel targets match tools/images" \
	go test -count=1 ./tools/images/...

if [ "$failed" -ne 0 ]; then
	echo "Bazel files are out of date." >&2
	exit 1
fi
echo "Bazel files are up to date."
