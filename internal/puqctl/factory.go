package puqctl

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	panelv1alpha1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
)

// Scheme holds the Kubernetes built-in types and ours; every client the plugin builds uses it.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(panelv1alpha1.AddToScheme(Scheme))
}

// Factory is what every subcommand shares: the kubectl connection flags and the streams to write to.
type Factory struct {
	// ConfigFlags are --kubeconfig, --context, -n and the rest of kubectl's connection flags.
	ConfigFlags *genericclioptions.ConfigFlags
	// IOStreams are where a command reads and writes (a buffer in tests).
	IOStreams genericiooptions.IOStreams
}

// Client returns a controller-runtime client (no cache) for the cluster the flags name. It has no
// client-side rate limit (client-go's default of 5 requests/s would make an import of thousands
// of Secrets take minutes); the API server's priority and fairness protects the server.
func (f *Factory) Client() (client.Client, error) {
	cfg, err := f.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("cannot load the kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, fmt.Errorf("cannot build a client: %w", err)
	}
	return c, nil
}

// User reads the User named name in the namespace of -n, with the client it used.
func (f *Factory) User(ctx context.Context, name string) (client.Client, *panelv1alpha1.User, error) {
	c, err := f.Client()
	if err != nil {
		return nil, nil, err
	}
	ns, err := f.Namespace()
	if err != nil {
		return nil, nil, err
	}
	user := &panelv1alpha1.User{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, user); err != nil {
		return nil, nil, fmt.Errorf("cannot read User %s/%s: %w", ns, name, err)
	}
	return c, user, nil
}

// Namespace returns the namespace from -n, else the kubeconfig context's, else "default".
func (f *Factory) Namespace() (string, error) {
	ns, _, err := f.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("cannot tell the namespace from the kubeconfig: %w", err)
	}
	return ns, nil
}
