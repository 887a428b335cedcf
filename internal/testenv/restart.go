package testenv

import (
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// NewRestartable is New with the API server's certificates and keys kept in certDir (a directory
// the caller owns and removes), so that RestartAPIServer brings it back on the same port with the
// same serving certificate, client CA and ServiceAccount signing key: the kubeconfigs, client
// certificates and tokens handed out before stay valid, as across a real API server restart.
// envtest otherwise makes a fresh directory, and so fresh keys, on every start.
func NewRestartable(certDir string) (*envtest.Environment, error) {
	env, err := New()
	if err != nil {
		return nil, err
	}
	env.ControlPlane.GetAPIServer().CertDir = certDir
	return env, nil
}

// StopAPIServer stops the kube-apiserver of a started environment (SIGTERM, as a rolling restart
// does), leaving etcd running.
func StopAPIServer(env *envtest.Environment) error {
	if err := env.ControlPlane.GetAPIServer().Stop(); err != nil {
		return fmt.Errorf("cannot stop kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts the kube-apiserver of an environment made by NewRestartable again, on the
// same etcd, port and certificates, and returns once it serves /healthz.
func StartAPIServer(env *envtest.Environment) error {
	if err := env.ControlPlane.GetAPIServer().Start(); err != nil {
		return fmt.Errorf("cannot start kube-apiserver again: %w", err)
	}
	return nil
}
