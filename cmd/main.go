/*
Copyright 2026.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command manager runs the puq-user-operator controllers.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	_ "k8s.io/client-go/plugin/pkg/client/auth"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	panelv1alpha1 "github.com/puqcloud/puq-user-operator/api/v1alpha1"
	"github.com/puqcloud/puq-user-operator/internal/controller"
	"github.com/puqcloud/puq-user-operator/internal/panel"
	"github.com/puqcloud/puq-user-operator/internal/password"
	webhookv1alpha1 "github.com/puqcloud/puq-user-operator/internal/webhook/v1alpha1"
)

var (
	scheme   = k8sruntime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(panelv1alpha1.AddToScheme(scheme))
}

// settings are the manager's flags; each can also come from an environment variable named
// PUQ_<FLAG> (upper case, dashes as underscores), which a flag on the command line overrides.
type settings struct {
	metricsAddr, probeAddr       string
	pprofAddr                    string
	secureMetrics, enableHTTP2   bool
	leaderElect                  bool
	metricsCertPath              string
	panelDSN, panelPasswordFile  string
	bcryptCost, minPasswordLen   int
	hashCosts                    password.CostRange
	totpIssuer, languages        string
	defaultLanguage              string
	totpDeviceName               string
	resync                       time.Duration
	instanceID, timezone         string
	clusterID, previousClusterID string
	maxConcurrent, maxHashes     int
	namespaces                   string
	leaderElectionNamespace      string
	leaseDuration, renewDeadline time.Duration
	retryPeriod                  time.Duration
	enableWebhooks               bool
	webhookHost, webhookCertPath string
	webhookPort                  int
}

// parseFlags registers the manager's flags on fs (its own, zap's and controller-runtime's
// --kubeconfig) and parses args. Each flag's default is first taken from the environment variable
// PUQ_<FLAG> (looked up with lookupEnv), so that a flag in args overrides it.
func parseFlags(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) (settings, zap.Options, error) {
	var s settings
	fs.StringVar(&s.metricsAddr, "metrics-bind-address", "0", "Address of the metrics endpoint: :8443 for HTTPS, :8080 "+
		"for HTTP, 0 to disable.")
	fs.StringVar(&s.probeAddr, "health-probe-bind-address", ":8081", "Address of the health probe endpoint.")
	fs.StringVar(&s.pprofAddr, "pprof-bind-address", "", "Address of a pprof endpoint for profiling; empty disables it.")
	fs.BoolVar(&s.leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles at a time.")
	fs.StringVar(&s.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease "+
		"(default: the pod's namespace).")
	fs.DurationVar(&s.leaseDuration, "leader-election-lease-duration", 15*time.Second, "Leader election lease duration.")
	fs.DurationVar(&s.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "Leader election renew deadline.")
	fs.DurationVar(&s.retryPeriod, "leader-election-retry-period", 2*time.Second, "How often leader election clients "+
		"try to acquire or renew the lease.")
	fs.BoolVar(&s.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with authentication and authorization.")
	fs.StringVar(&s.metricsCertPath, "metrics-cert-path", "", "Directory holding tls.crt and tls.key for the metrics server.")
	fs.BoolVar(&s.enableHTTP2, "enable-http2", false, "Enable HTTP/2 for the metrics server.")
	fs.StringVar(&s.panelDSN, "panel-dsn", "sqlite://panel.db", "The panel database: mysql://user@tcp(host:3306)/database "+
		"or sqlite:///path/panel.db. No password here: see --panel-password-file.")
	fs.StringVar(&s.panelPasswordFile, "panel-password-file", "", "File holding the MySQL password (default: the "+
		panel.PasswordEnv+" environment variable).")
	fs.IntVar(&s.bcryptCost, "bcrypt-cost", password.DefaultCost, "bcrypt cost for cleartext passwords (the panel's is 12); "+
		"within --password-hash-min-cost and --password-hash-max-cost.")
	fs.IntVar(&s.hashCosts.Min, "password-hash-min-cost", password.DefaultCostRange.Min, "The lowest bcrypt cost accepted, "+
		"for --bcrypt-cost and for hashes in a Secret's passwordHash key (a cheaper hash is quick to crack).")
	fs.IntVar(&s.hashCosts.Max, "password-hash-max-cost", password.DefaultCostRange.Max, "The highest bcrypt cost accepted, "+
		"for --bcrypt-cost and for hashes in a Secret's passwordHash key (each login attempt for the email costs the panel "+
		"2^(cost-12) checks at its own cost).")
	fs.IntVar(&s.minPasswordLen, "min-password-length", 12, "Minimum length of cleartext passwords.")
	fs.StringVar(&s.totpIssuer, "totp-issuer", "PUQcloud", "Issuer shown in authenticator apps for issued TOTP seeds.")
	fs.StringVar(&s.totpDeviceName, "totp-device-name", "", "Device name of the authenticator rows the operator writes, "+
		"shown by the panel at login (\"Use the Authenticator app on your device <name>\") and in the Verification Center. "+
		"Empty: the --totp-issuer value, the name the seed has in the person's authenticator app.")
	fs.StringVar(&s.languages, "languages", "en,uk,pl,fr", "The panel's enabled client languages, comma-separated: "+
		"its APP_AVAILABLE_LOCALE_CLIENT.")
	fs.StringVar(&s.defaultLanguage, "default-language", "", "The panel's default client language "+
		"(config('locale.client.default')), written for Users without spec.language whose panel language is empty or not "+
		"one of --languages; one of --languages. Empty: the first of --languages.")
	fs.DurationVar(&s.resync, "resync-period", 10*time.Minute, "How often Ready objects are compared with the panel to "+
		"repair drift and report panel-side changes.")
	fs.StringVar(&s.instanceID, "instance-id", "default", "Names this operator in the binding tables; two operators of one "+
		"cluster writing one panel need different IDs.")
	fs.StringVar(&s.clusterID, "cluster-id", "", "The identity of this cluster, recorded in every binding next to the "+
		"instance ID (default: the UID of the kube-system namespace, read at start).")
	fs.StringVar(&s.previousClusterID, "previous-cluster-id", "", "Take over the bindings written in this cluster (its "+
		"--cluster-id or kube-system UID) by namespace and name: for a cluster rebuilt from git, whose objects all have "+
		"new UIDs. Empty: none.")
	fs.StringVar(&s.timezone, "timezone", "UTC", "The panel's timezone: set it to the panel's APP_TIMEZONE (its .env); "+
		"timestamps and activity rows are written in it.")
	fs.IntVar(&s.maxConcurrent, "max-concurrent-reconciles", 4*runtime.GOMAXPROCS(0), "Objects reconciled at once, per kind. "+
		"Most of a reconcile waits on the API server and the database, so more than the cores (GOMAXPROCS, which follows "+
		"a container CPU limit).")
	fs.IntVar(&s.maxHashes, "max-concurrent-hashes", runtime.GOMAXPROCS(0), "bcrypt hashes computed at once (each takes a core "+
		"for about a quarter second at cost 12); reconciles beyond this wait for a slot, the others go on.")
	fs.StringVar(&s.namespaces, "namespace", "", "Watch only these namespaces (comma-separated); default all. Email "+
		"uniqueness is then checked among the watched Users (the panel's unique index still applies).")
	fs.BoolVar(&s.enableWebhooks, "enable-webhooks", false, "Serve the validating admission webhooks for Users and "+
		"ClientMemberships (config/default turns it on; it needs a serving certificate, see --webhook-cert-path).")
	fs.StringVar(&s.webhookHost, "webhook-host", "", "Address the admission webhook server listens on (empty: every "+
		"interface).")
	fs.IntVar(&s.webhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	fs.StringVar(&s.webhookCertPath, "webhook-cert-path", "", "Directory holding tls.crt and tls.key for the admission "+
		"webhook server, reloaded when they change (default: /tmp/k8s-webhook-server/serving-certs).")
	opts := zap.Options{}
	opts.BindFlags(fs)
	config.RegisterFlags(fs)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		if v, ok := lookupEnv(env); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("invalid %s: %w", env, err)
			}
		}
	})
	if envErr != nil {
		return s, opts, envErr
	}
	return s, opts, fs.Parse(args)
}

// envName is the environment variable that sets a flag: PUQ_ and the name in upper case, dashes
// as underscores.
func envName(flagName string) string {
	return "PUQ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func main() {
	// A flag set of our own, not flag.CommandLine: the binary takes exactly the flags parseFlags
	// registers, each of which its environment variable can set.
	s, zapOpts, err := parseFlags(flag.NewFlagSet(os.Args[0], flag.ExitOnError), os.Args[1:], os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(s); err != nil {
		setupLog.Error(err, "Manager failed")
		os.Exit(1)
	}
}

func run(s settings) error {
	loc, err := time.LoadLocation(s.timezone)
	if err != nil {
		return fmt.Errorf("invalid --timezone: %w", err)
	}
	if err := s.hashCosts.Validate(); err != nil {
		return fmt.Errorf("invalid --password-hash-min-cost/--password-hash-max-cost: %w", err)
	}
	if !s.hashCosts.Contains(s.bcryptCost) {
		return fmt.Errorf("--bcrypt-cost=%d is outside --password-hash-min-cost=%d and --password-hash-max-cost=%d; "+
			"raise or lower one of them", s.bcryptCost, s.hashCosts.Min, s.hashCosts.Max)
	}
	languages := splitList(s.languages)
	defaultLanguage, err := defaultLanguage(languages, s.defaultLanguage)
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	store, err := panel.Open(openCtx, panel.Options{DSN: s.panelDSN, PasswordFile: s.panelPasswordFile, Location: loc,
		Observe: controller.ObserveDatabase, TOTPDeviceName: cmp.Or(s.totpDeviceName, s.totpIssuer)})
	cancel()
	if err != nil {
		return fmt.Errorf("cannot open the panel database: %w", err)
	}
	defer func() { _ = store.Close() }()
	setupLog.Info("Opened the panel database", "engine", store.Engine())

	var tlsOpts []func(*tls.Config)
	if !s.enableHTTP2 {
		// HTTP/2 Stream Cancellation and Rapid Reset CVEs: serve HTTP/1.1 only unless asked.
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: s.metricsAddr, SecureServing: s.secureMetrics, TLSOpts: tlsOpts,
		CertDir: s.metricsCertPath}
	if s.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	// The webhook server starts only when webhooks are registered (--enable-webhooks): without
	// them it needs no certificate.
	webhookServer := webhook.NewServer(webhook.Options{Host: s.webhookHost, Port: s.webhookPort,
		CertDir: s.webhookCertPath, TLSOpts: tlsOpts})
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		WebhookServer:                 webhookServer,
		HealthProbeBindAddress:        s.probeAddr,
		PprofBindAddress:              s.pprofAddr,
		LeaderElection:                s.leaderElect,
		LeaderElectionID:              "puq-user-operator.panel.puqcloud.com",
		LeaderElectionNamespace:       s.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &s.leaseDuration,
		RenewDeadline:                 &s.renewDeadline,
		RetryPeriod:                   &s.retryPeriod,
		Cache: crcache.Options{
			DefaultTransform:  crcache.TransformStripManagedFields(), // the controllers never read managed fields
			DefaultNamespaces: namespaceConfig(s.namespaces),
		},
		// Secrets are never served from a cache: the controllers read the few they need directly.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	if err != nil {
		return fmt.Errorf("cannot create the manager: %w", err)
	}
	cluster, err := clusterIdentity(ctx, mgr.GetAPIReader(), s.clusterID)
	if err != nil {
		return err
	}
	opts := controller.Options{
		InstanceID: s.instanceID, ClusterID: cluster, PreviousClusterID: s.previousClusterID,
		BcryptCost: s.bcryptCost, HashCosts: s.hashCosts, PasswordPolicy: password.Policy{MinLength: s.minPasswordLen},
		Languages: languages, DefaultLanguage: defaultLanguage, TOTPIssuer: s.totpIssuer, ResyncPeriod: s.resync,
		MaxConcurrentReconciles: s.maxConcurrent, MaxConcurrentHashes: s.maxHashes, Namespaces: splitList(s.namespaces),
	}
	if err := controller.Setup(ctx, mgr, store, opts); err != nil {
		return err
	}
	if err := (&controller.PanelAccessPolicyReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("cannot set up the PanelAccessPolicy controller: %w", err)
	}
	if s.enableWebhooks {
		if err := setupWebhooks(ctx, mgr, opts.Namespaces); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Readiness is "this replica can answer": its caches synced and, with webhooks, its webhook
	// server started. The Deployment's probe excludes panel-database (/readyz?exclude=panel-database):
	// a database outage must not take every replica out of the webhook Service (failurePolicy Fail
	// would then refuse every apply of a User); the database's own state is in /readyz (all checks),
	// the Users' DatabaseUnavailable conditions and the metrics.
	if err := mgr.AddReadyzCheck(readyzInformers, informersSynced(mgr.GetCache())); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck(readyzPanelDatabase, func(r *http.Request) error { return store.Ping(r.Context()) }); err != nil {
		return err
	}
	setupLog.Info("Starting manager", "instanceID", s.instanceID, "clusterID", cluster, "previousClusterID",
		s.previousClusterID, "languages", opts.Languages, "defaultLanguage", opts.DefaultLanguage)
	return mgr.Start(ctx)
}

// The readiness checks' names (/readyz/<name>).
const (
	readyzInformers     = "informers"
	readyzPanelDatabase = "panel-database"
)

// informersSynced passes once every informer the cache has started has synced, so a replica
// takes webhook requests only when it can judge them from a complete cache.
func informersSynced(c crcache.Cache) healthz.Checker {
	return func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("the informers have not synced yet")
		}
		return nil
	}
}

// setupWebhooks registers the admission webhooks, which judge from the manager's cache with the
// controllers' indexes (registered by controller.Setup) and their own. Every replica serves them,
// leader or not: the cache runs in each.
func setupWebhooks(ctx context.Context, mgr ctrl.Manager, namespaces []string) error {
	if err := webhookv1alpha1.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("cannot set up the webhooks' field indexes: %w", err)
	}
	if err := webhookv1alpha1.SetupUserWebhookWithManager(mgr, namespaces); err != nil {
		return fmt.Errorf("cannot set up the User webhook: %w", err)
	}
	if err := webhookv1alpha1.SetupClientMembershipWebhookWithManager(mgr, namespaces); err != nil {
		return fmt.Errorf("cannot set up the ClientMembership webhook: %w", err)
	}
	return mgr.AddReadyzCheck("webhook-server", mgr.GetWebhookServer().StartedChecker())
}

// clusterIdentity is the cluster's identity for the binding tables: the flag's value, else the UID
// of the kube-system namespace, which lives as long as the cluster's etcd does (read once, with
// the manager's get on namespaces).
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
func clusterIdentity(ctx context.Context, r client.Reader, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	ns := &corev1.Namespace{}
	var err error
	// A control plane that has just started creates kube-system a moment after it answers.
	pollErr := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err = r.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, ns)
		return !apierrors.IsNotFound(err), nil
	})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return "", fmt.Errorf("cannot read the kube-system namespace, whose UID identifies this cluster in the binding "+
			"tables (set --cluster-id where it cannot be read): %w", err)
	}
	return string(ns.UID), nil
}

func namespaceConfig(v string) map[string]crcache.Config {
	list := splitList(v)
	if len(list) == 0 {
		return nil
	}
	out := make(map[string]crcache.Config, len(list))
	for _, ns := range list {
		out[ns] = crcache.Config{}
	}
	return out
}

// defaultLanguage is the --default-language value checked against --languages: the flag, else
// the first language.
func defaultLanguage(languages []string, flagValue string) (string, error) {
	if flagValue == "" {
		if len(languages) == 0 {
			return "", nil
		}
		return languages[0], nil
	}
	if !slices.Contains(languages, flagValue) {
		return "", fmt.Errorf("--default-language=%s is not one of --languages=%s; set both as the panel has them: "+
			"--languages to its APP_AVAILABLE_LOCALE_CLIENT, --default-language to its config('locale.client.default')",
			flagValue, strings.Join(languages, ","))
	}
	return flagValue, nil
}

func splitList(v string) []string {
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
