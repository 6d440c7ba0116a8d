package controller

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get

// serviceAccounts answers whether a ServiceAccount exists. A Job whose pod
// names a missing ServiceAccount never gets a pod, so a Task must not start
// before its Agent's ServiceAccount exists. ServiceAccounts are read from the
// API server, not cached (the controller caches only what it owns); a found
// one is remembered for a while so a burst of Tasks costs one read.
type serviceAccounts struct {
	reader client.Reader
	ttl    time.Duration

	mu    sync.Mutex
	found map[types.NamespacedName]time.Time
}

func newServiceAccounts(reader client.Reader) *serviceAccounts {
	return &serviceAccounts{reader: reader, ttl: 30 * time.Second, found: map[types.NamespacedName]time.Time{}}
}

func (s *serviceAccounts) exists(ctx context.Context, namespace, name string) (bool, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	s.mu.Lock()
	seen, ok := s.found[key]
	s.mu.Unlock()
	if ok && time.Since(seen) < s.ttl {
		return true, nil
	}
	err := s.reader.Get(ctx, key, &corev1.ServiceAccount{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.found[key] = time.Now()
	s.mu.Unlock()
	return true, nil
}
