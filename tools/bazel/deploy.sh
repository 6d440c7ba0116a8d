#!/usr/bin/env bash
# Deploys KubeOpenCode to a local kind cluster through a local registry:
#   bazel run //:deploy
# It follows kind's documented local-registry set-up: a registry container on
# 127.0.0.1:${REGISTRY_PORT}, containerd on each node told to reach
# localhost:${REGISTRY_PORT} at that container, and the
# local-registry-hosting ConfigMap. Then it pushes the three images, renders
# the manifests with their digests, applies the CRDs, waits for them, applies
# the rest and waits for every Deployment to roll out.
#
# Needs docker, kind and kubectl on PATH. Settings (environment):
#   KIND_CLUSTER_NAME (kubeopencode), REGISTRY_NAME (kind-registry),
#   REGISTRY_PORT (5001), ROLLOUT_TIMEOUT (180s).
set -euo pipefail

# Every argument is a runfiles path ("_main/push_controller_push.sh", from
# $(rlocationpath ...)). runfile turns one into an absolute path, so that a
# file is never looked up on PATH as a command. `bazel run` starts this
# script in <runfiles>/_main. RUNFILES_DIR is exported for the push scripts
# of rules_oci, which find crane and the image through it: run from here,
# their own "$0.runfiles" does not exist.
if [ -z "${RUNFILES_DIR:-}" ]; then
	if [ -d "$0.runfiles" ]; then
		RUNFILES_DIR="$0.runfiles"
	else
		RUNFILES_DIR="$PWD/.."
	fi
fi
RUNFILES_DIR="$(cd "$RUNFILES_DIR" && pwd -P)"
export RUNFILES_DIR
runfile() {
	if [ ! -e "$RUNFILES_DIR/$1" ]; then
		echo "deploy: $1 is not in the runfiles of //:deploy ($RUNFILES_DIR)" >&2
		return 1
	fi
	printf '%s/%s\n' "$RUNFILES_DIR" "$1"
}

render="$(runfile "$1")"
push_controller="$(runfile "$2")"
push_git_init="$(runfile "$3")"
push_context_init="$(runfile "$4")"
digest_controller="$(runfile "$5")"
digest_git_init="$(runfile "$6")"
digest_context_init="$(runfile "$7")"
shift 7
crds=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
	crds+=("$(runfile "$1")")
	shift
done
shift # --
manifests=()
for f in "$@"; do manifests+=("$(runfile "$f")"); done

cluster="${KIND_CLUSTER_NAME:-kubeopencode}"
reg_name="${REGISTRY_NAME:-kind-registry}"
reg_port="${REGISTRY_PORT:-5001}"
timeout="${ROLLOUT_TIMEOUT:-180s}"
prefix="localhost:${reg_port}/kubeopencode"

for bin in docker kind kubectl; do
	command -v "$bin" >/dev/null || {
		echo "deploy: $bin is not on PATH; install it first" >&2
		exit 1
	}
done

# 1. The registry container.
if [ "$(docker inspect -f '{{.State.Running}}' "$reg_name" 2>/dev/null || true)" != "true" ]; then
	docker run -d --restart=always -p "127.0.0.1:${reg_port}:5000" --network bridge --name "$reg_name" registry:2
fi

# 2. The cluster, with containerd reading per-registry hosts.toml files.
if ! kind get clusters | grep -qx "$cluster"; then
	kind create cluster --name "$cluster" --config=- <<KIND
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
KIND
fi
kubectl config use-context "kind-${cluster}" >/dev/null

# 3. Every node resolves localhost:PORT to the registry container.
for node in $(kind get nodes --name "$cluster"); do
	docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:${reg_port}"
	printf '[host."http://%s:5000"]\n' "$reg_name" |
		docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/localhost:${reg_port}/hosts.toml"
done

# 4. The registry joins the cluster's network.
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$reg_name")" = "null" ]; then
	docker network connect kind "$reg_name"
fi

# 5. Document the registry for tools that look for it (KEP-1755).
kubectl apply -f - <<CM
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${reg_port}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
CM

# 6. Push the images (multi-platform indexes) by digest.
"$push_controller" --repository "${prefix}/controller"
"$push_git_init" --repository "${prefix}/git-init"
"$push_context_init" --repository "${prefix}/context-init"

# 7. Render: every placeholder becomes localhost:PORT/kubeopencode/<image>@sha256:...
# mktemp -d with a template works with both GNU and BSD (macOS) mktemp.
workdir="$(mktemp -d "${TMPDIR:-/tmp}/kubeopencode-deploy.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT
rendered="$workdir/kubeopencode.yaml"
"$render" --repository "$prefix" \
	--digest "controller=${digest_controller}" \
	--digest "git-init=${digest_git_init}" \
	--digest "context-init=${digest_context_init}" \
	"${manifests[@]}" >"$rendered"

# 8. CRDs first, so that objects of their kinds in the manifests are accepted.
crd_args=()
for f in "${crds[@]}"; do crd_args+=(-f "$f"); done
kubectl apply --server-side "${crd_args[@]}"
kubectl wait --for=condition=Established --timeout=60s "${crd_args[@]}"
kubectl apply --server-side -f "$rendered"

# 9. Wait for every Deployment of the manifests.
kubectl get -f "$rendered" -o jsonpath='{range .items[?(@.kind=="Deployment")]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' |
	while read -r ns name; do
		kubectl -n "$ns" rollout status "deployment/${name}" --timeout="$timeout"
	done
echo "KubeOpenCode is running in kind cluster ${cluster}; images under ${prefix}."
