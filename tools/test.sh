#!/usr/bin/env bash
# The whole test suite, as CI runs it. Needs Go; as root it installs the
# Debian packages the tests need when they are missing. The first run builds etcd,
# Kubernetes and kwok from source into ~/.cache/kubeopencode (10-15 minutes
# on two cores); later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==== %s\n' "$*"; }

# Debian packages the tests use: git (the tests serve real repositories with
# git http-backend), kubectl (the install stream is applied with it) and, for
# the real-node tests, containerd, runc and the CNI plugins, and iptables and
# ipset for kube-router's NetworkPolicy enforcement. Installed when missing and this runs as root.
need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v kubectl >/dev/null 2>&1 || need+=(kubectl)
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ipset >/dev/null 2>&1 || need+=(ipset)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		section "Installing ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	elif ! command -v git >/dev/null 2>&1; then
		echo "git is required by the tests: install it" >&2
		exit 1
	else
		echo "NOTE: ${need[*]} missing and not root: the real-node tests will say they cannot run" >&2
	fi
fi

section "No build output in the tree"
go run ./tools/treecheck
# Every binary \`go build\` would write (at the root, or in the package's
# directory) is ignored, so it cannot be added by accident.
for pkg in $(go list -f '{{if eq .Name "main"}}{{.Dir}}{{end}}' ./...); do
	rel=${pkg#"$PWD"/}
	for out in "${pkg##*/}" "$rel/${pkg##*/}"; do
		if ! git check-ignore -q --no-index "$out"; then
			echo "$out (what go build writes for $rel) is not in .gitignore: add /$out" >&2
			exit 1
		fi
	done
done

section "Generated files (deepcopy, CRDs, RBAC) match the sources"
tools/generate.sh --check

section "Bazel files match the sources"
tools/bazel/check.sh

section "go vet"
go vet ./...

section "Kubernetes binaries (built once, then cached)"
go run ./tools/localcluster build

section "go test: unit, golden and API-server integration tests"
go test -count=1 -timeout 40m "$@" $(go list ./... | grep -v /e2e/)

# The end-to-end suites each run a whole cluster; one at a time keeps their
# timing honest on a two-core machine.
section "go test: end to end on the local cluster"
go test -count=1 -timeout 40m -p 1 "$@" ./e2e/...
