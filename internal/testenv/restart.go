package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

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

// KillAPIServer ends the kube-apiserver of an environment made by NewRestartable with SIGKILL,
// as a crash or an evicted static pod would, leaving etcd running: every connection to it is cut
// at once. (envtest's own Stop sends SIGTERM, on which kube-apiserver drains for about a minute
// before it exits.) The process is found by its --cert-dir, which is the caller's own directory.
func KillAPIServer(env *envtest.Environment) error {
	api := env.ControlPlane.GetAPIServer()
	pid, err := processWithArg("kube-apiserver", "--cert-dir="+api.CertDir)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("cannot kill kube-apiserver (pid %d): %w", pid, err)
	}
	// envtest waits for its process; once it has reaped it, its Stop has nothing left to do.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver (pid %d) is still there 30s after SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// envtest's own wait reaps the process and then marks it exited; a Stop in between signals a
	// process that is gone (ESRCH). Once it has marked it, Stop has nothing to signal.
	for {
		err := api.Stop()
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ESRCH) && !errors.Is(err, os.ErrProcessDone) || time.Now().After(deadline) {
			return fmt.Errorf("cannot mark kube-apiserver stopped: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processWithArg is the ID of the one process named name that has arg on its command line.
func processWithArg(name, arg string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	found := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(raw), "\x00")
		if filepath.Base(args[0]) == name && slices.Contains(args, arg) {
			if found != 0 {
				return 0, fmt.Errorf("two %s processes have %s", name, arg)
			}
			found = pid
		}
	}
	if found == 0 {
		return 0, fmt.Errorf("no %s process has %s", name, arg)
	}
	return found, nil
}

// StartAPIServer starts the kube-apiserver of an environment made by NewRestartable again, on the
// same etcd, port and certificates, and returns once it serves /healthz.
func StartAPIServer(env *envtest.Environment) error {
	if err := env.ControlPlane.GetAPIServer().Start(); err != nil {
		return fmt.Errorf("cannot start kube-apiserver again: %w", err)
	}
	return nil
}
