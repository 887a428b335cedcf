package controller

// Test hooks for the external controller_test package: compiled only into the test binary.

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// SecretWatch is the Secret watch a manager runs inside the User controller, exposed so a test can
// run one by itself and look at what it remembers.
type SecretWatch = secretWatch

// NewSecretWatch is the watch SetupWithManager starts: users must carry the field indexes of
// SetupIndexes.
func NewSecretWatch(c metadata.Interface, users client.Reader, namespaces []string) *SecretWatch {
	return newSecretWatch(c, users, namespaces)
}

// Remembered is how many Secrets the watch keeps a version of.
func (w *secretWatch) Remembered() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.versions)
}

// Queue is where the watch queues the Users of changed Secrets.
func (w *secretWatch) Queue() <-chan event.GenericEvent { return w.queue }

// SecretVersion is the version string the watch and the binding row use for a Secret.
func SecretVersion(s metav1.Object) string { return string(s.GetUID()) + "/" + s.GetResourceVersion() }

// Key names a Secret for SecretWatch.Version.
func Key(namespace, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: namespace, Name: name}
}
