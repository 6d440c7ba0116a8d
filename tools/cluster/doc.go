// Package cluster builds the pinned etcd, Kubernetes, kwok and kube-router
// binaries from source and runs them as a local cluster for tests and
// development.
//
// Binaries: EnsureBinaries compiles etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet, kwok and kube-router from
// the modules in tools/k8sbin with the local Go toolchain and build cache, into
// ${KUBEOPENCODE_CACHE:-$HOME/.cache/kubeopencode}/k8s/<versions>/ (kube-router
// into k8s/kube-router-<version>/ beside it). The first build takes 10-15
// minutes on two cores; later calls return at once, and concurrent callers
// share one build through a file lock.
//
// API server only: package envtest (tools/cluster/envtest) runs etcd and
// kube-apiserver through controller-runtime's envtest with CRDs installed:
//
//	cfg := envtest.ForTest(t, "../../manifests/crds")
//
// Whole cluster: Start runs etcd, kube-apiserver (client-certificate auth,
// RBAC and Node authorization, NodeRestriction and PodSecurity admission),
// kube-controller-manager with all default controllers, kube-scheduler and
// kwok with fake nodes, all on 127.0.0.1:
//
//	c, err := cluster.Start(ctx, cluster.Options{Nodes: 2})
//	defer c.Stop()
//	cfg := c.RESTConfig() // or KUBECONFIG=c.Kubeconfig
//
// Pods on fake nodes never run; kwok reports init containers finished with
// exit code 0 and containers running, then, for pods with restartPolicy Never
// or OnFailure, ends them after AnnotationDuration (default one second) with
// AnnotationExitCode (default 0; non-zero fails the pod and is the container's
// terminated exit code). Pods being deleted are removed at once.
//
// Real node: with Options.RealNode (root and containerd, runc and the CNI
// plugins; see RealNodeSupported) Start also runs a kubelet with containerd
// that runs pods in real containers, and forwards the kubernetes Service
// address (10.96.0.1:443, put on lo) to the API server so that in-cluster
// clients work unchanged. Stop deletes the workload controllers and drains
// the node before it stops the components, and removes the address.
//
// NetworkPolicies: with Options.NetworkPolicy as well (iptables and ipset;
// RealNodeSupported(WithNetworkPolicy)) kube-router's network policy
// controller enforces them on the real node, so tests can prove that a pod is
// cut off from an address:
//
//	c, err := cluster.Start(ctx, cluster.Options{RealNode: true, NetworkPolicy: true})
//
// Pods' connections to the kubernetes Service are then DNATed, as kube-proxy
// would, to c.APIServiceEndpoint, the address policies see. Stop removes
// kube-router's iptables chains and ipsets. kube-router (KubeRouterVersion,
// the version the Go module proxy serves) has reported security flaws; it is
// only a test-time enforcer on this host and never shipped.
package cluster
