#!/usr/bin/env bash
# The whole test suite, as CI runs it. Needs Go; installs git from Debian
# when it is missing and this runs as root. The first run builds etcd,
# Kubernetes and kwok from source into ~/.cache/kubeopencode (10-15 minutes
# on two cores); later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==== %s\n' "$*"; }

if ! command -v git >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		section "Installing git (the tests serve real repositories with git http-backend)"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git >/dev/null
	else
		echo "git is required by the tests (git http-backend serves test repositories): install it" >&2
		exit 1
	fi
fi

section "Generated files (deepcopy, CRDs, RBAC) match the sources"
tools/generate.sh --check

section "Bazel files match the sources"
tools/bazel/check.sh

section "go vet"
go vet ./...

section "Kubernetes binaries (built once, then cached)"
go run ./tools/localcluster build

section "go test"
go test -count=1 -timeout 75m "$@" ./...
