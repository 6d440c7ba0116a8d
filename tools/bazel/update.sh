#!/usr/bin/env bash
# Regenerates every generated Bazel file: BUILD.bazel files (Gazelle),
# use_repo(go_deps, ...) in MODULE.bazel, then formats all Starlark.
# tools/bazel/check.sh verifies that running this would change nothing.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

tool() { go tool -modfile=tools/devtools/go.mod "$@"; }


go run ./tools/bazel/bzlsync repo-config
go run ./tools/bazel/agentinputs
tool gazelle
go run ./tools/bazel/bzlsync use-repo
tool buildifier -r -mode=fix -lint=fix .
echo "Bazel files regenerated; review with git diff."
