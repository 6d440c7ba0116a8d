#!/usr/bin/env bash
# Regenerates deepcopy code, CRDs and RBAC from the Go types and markers.
#   tools/generate.sh          write the generated files
#   tools/generate.sh --check  fail if any generated file differs from what is committed
set -euo pipefail
cd "$(dirname "$0")/.."

cg() { go tool -modfile=tools/devtools/go.mod controller-gen "$@"; }

generate() {
  cg object:headerFile=/dev/null paths=./api/...
  cg crd paths=./api/... output:crd:artifacts:config=manifests/crd
  if [ -d operator ]; then
    cg rbac:roleName=kubeopencode-controller paths=./operator/... output:rbac:artifacts:config=manifests/rbac
  fi
}

if [ "${1:-}" = "--check" ]; then
  generate
  if ! git diff --exit-code --stat -- api manifests/crd manifests/rbac; then
    echo "Generated files are out of date: run tools/generate.sh and commit the result." >&2
    exit 1
  fi
  untracked=$(git ls-files --others --exclude-standard -- api manifests/crd manifests/rbac)
  if [ -n "$untracked" ]; then
    echo "Generated files are not committed: $untracked" >&2
    exit 1
  fi
else
  generate
fi
