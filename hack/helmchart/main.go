// Command helmchart generates the Helm chart under dist/chart from config/default: kubebuilder's
// helm/v2-alpha plugin turns the rendered kustomization into templates, and this program then
// applies what the plugin cannot know (the panel database Secret, the watched namespaces and
// their Secrets Roles, leader election, the shipped PanelAccessPolicy) and lays the hand-written
// files of hack/helm over it (Chart.yaml, values.yaml, values.schema.json, NOTES.txt, extra
// templates). Run it with `make helm-chart`; test/deploy fails when its output differs from the
// committed chart, so the chart never drifts from config/.
//
// Every edit of a generated template must match exactly once, and the plugin's view of the
// Deployment (its values.yaml) must equal what hack/helm/values.yaml and the edits below assume:
// when config/ or the plugin changes, generation fails and says what to update, rather than
// dropping a flag or a variable silently.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

func main() {
	out := flag.String("out", "dist/chart", "the chart directory to (re)write")
	kubebuilder := flag.String("kubebuilder", "bin/kubebuilder", "the kubebuilder binary (make kubebuilder)")
	flag.Parse()
	if err := generate(*kubebuilder, *out); err != nil {
		fmt.Fprintln(os.Stderr, "helmchart:", err)
		os.Exit(1)
	}
}

// overlayDir holds the chart's hand-written files, copied over the plugin's output.
const overlayDir = "hack/helm"

func generate(kubebuilder, out string) error {
	kb, err := filepath.Abs(kubebuilder)
	if err != nil {
		return err
	}
	if _, err := os.Stat(kb); err != nil {
		return fmt.Errorf("cannot find kubebuilder at %s: run `make kubebuilder` first: %w", kb, err)
	}
	manifests, err := renderDefault()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "helmchart-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	// The plugin reads PROJECT from its working directory and, on a first run, edits PROJECT and
	// the Makefile: it runs in a scratch directory so that neither changes here.
	project, err := os.ReadFile("PROJECT")
	if err != nil {
		return fmt.Errorf("cannot read PROJECT (run from the repository root): %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, "PROJECT"), project, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "install.yaml"), manifests, 0o644); err != nil {
		return err
	}
	cmd := exec.Command(kb, "edit", "--plugins=helm/v2-alpha", "--manifests=install.yaml", "--output-dir=gen", "--force")
	cmd.Dir = work
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubebuilder edit --plugins=helm/v2-alpha: %w\n%s", err, b)
	}
	gen := filepath.Join(work, "gen", "chart")
	if err := checkPluginValues(filepath.Join(gen, "values.yaml")); err != nil {
		return err
	}
	files := map[string][]byte{}
	if err := readTree(filepath.Join(gen, "templates"), "templates", files); err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(gen, ".helmignore")); err == nil {
		files[".helmignore"] = b
	}
	delete(files, "templates/NOTES.txt") // ours is in hack/helm
	webhook := hasPrefix(files, "templates/webhook/")
	edits := maps.Clone(templateEdits)
	if webhook {
		for path, e := range webhookEdits {
			edits[path] = append(slices.Clone(edits[path]), e...)
		}
	}
	for path, edits := range edits {
		b, ok := files[path]
		if !ok {
			return fmt.Errorf("the plugin no longer generates %s: update hack/helmchart", path)
		}
		for _, e := range edits {
			if b, err = e.apply(b); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		files[path] = b
	}
	overlay := map[string][]byte{}
	if err := readTree(overlayDir, "", overlay); err != nil {
		return err
	}
	for path, b := range overlay {
		if _, ok := files[path]; ok && path != ".helmignore" {
			return fmt.Errorf("%s/%s would replace the generated %s: edit it through templateEdits instead", overlayDir, path, path)
		}
		files[path] = b
	}
	if webhook {
		files["templates/webhook/certificate-check.yaml"] = []byte(webhookCertificateCheck)
	} else {
		// Until config/default deploys the validating webhook, the chart has none to enable.
		files["templates/webhook/not-in-config.yaml"] = []byte(webhookGuard)
	}
	return writeTree(out, files)
}

// renderDefault is `kustomize build config/default`.
func renderDefault() ([]byte, error) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "config/default")
	if err != nil {
		return nil, fmt.Errorf("cannot build config/default: %w", err)
	}
	return res.AsYaml()
}

// pluginManager is what the plugin's values.yaml must say about the Deployment of config/manager
// for hack/helm/values.yaml and the edits below to be right.
const pluginManager = `
args: [--leader-elect, --enable-webhooks]
env:
- name: PUQ_PANEL_DSN
  valueFrom: {secretKeyRef: {name: puq-user-operator-panel-db, key: dsn}}
- name: PANEL_DB_PASSWORD
  valueFrom: {secretKeyRef: {name: puq-user-operator-panel-db, key: password}}
- name: GOMAXPROCS
  valueFrom: {resourceFieldRef: {resource: limits.cpu}}
healthProbe: {port: 8081}
`

// sameAsOverlay are the plugin's manager values that hack/helm/values.yaml must repeat as they are.
var sameAsOverlay = []string{"resources", "securityContext", "podSecurityContext", "terminationGracePeriodSeconds",
	"healthProbe"}

func checkPluginValues(path string) error {
	var plugin, overlay struct {
		Manager map[string]any `json:"manager"`
	}
	if err := readYAML(path, &plugin); err != nil {
		return err
	}
	if err := readYAML(filepath.Join(overlayDir, "values.yaml"), &overlay); err != nil {
		return err
	}
	var want map[string]any
	if err := yaml.Unmarshal([]byte(pluginManager), &want); err != nil {
		return err
	}
	var errs []error
	for key, w := range want {
		if !reflect.DeepEqual(plugin.Manager[key], w) {
			errs = append(errs, fmt.Errorf("config/manager's %s became %v (was %v): update the manager edits in "+
				"hack/helmchart and hack/helm/values.yaml", key, plugin.Manager[key], w))
		}
	}
	for _, key := range sameAsOverlay {
		if !reflect.DeepEqual(plugin.Manager[key], overlay.Manager[key]) {
			errs = append(errs, fmt.Errorf("config/manager's %s is %v, hack/helm/values.yaml's manager.%s is %v: make them "+
				"equal", key, plugin.Manager[key], key, overlay.Manager[key]))
		}
	}
	return errors.Join(errs...)
}

func readYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// edit replaces the matches of old (a regular expression) with new: exactly one, or with many
// at least one.
type edit struct {
	old, new string
	many     bool
}

func (e edit) apply(b []byte) ([]byte, error) {
	re := regexp.MustCompile(e.old)
	if n := len(re.FindAllIndex(b, -1)); (n != 1 && !e.many) || n == 0 {
		return nil, fmt.Errorf("the edit for %q matches %d times, want once: the plugin's output changed, update "+
			"hack/helmchart", e.old, n)
	}
	return re.ReplaceAllLiteral(b, []byte(e.new)), nil
}

var templateEdits = map[string][]edit{
	"templates/manager/manager.yaml": {
		// The plugin templates the probe port only on a bare /readyz path; ours has a query
		// (?exclude=panel-database, see config/manager).
		{`(?m)^            path: /readyz\?exclude=panel-database\n            port: 8081$`,
			`            path: /readyz?exclude=panel-database
            port: {{ .Values.manager.healthProbe.port }}`, false},
		// --leader-elect and --namespace come from their own values, not from manager.args.
		{`(?m)^        - --health-probe-bind-address=:\{\{ \.Values\.manager\.healthProbe\.port \}\}\n`,
			`        - --health-probe-bind-address=:{{ .Values.manager.healthProbe.port }}
        {{- if .Values.leaderElection.enabled }}
        - --leader-elect
        {{- end }}
        {{- with .Values.watchNamespaces }}
        - --namespace={{ join "," . }}
        {{- end }}
`, false},
		// The panel database comes from the Secret panelDatabase names; manager.env adds to it.
		{`(?s)\n        env:\n.*?\n        image: `, `
        env:
        - name: PUQ_PANEL_DSN
          valueFrom:
            secretKeyRef:
              name: {{ .Values.panelDatabase.secretName }}
              key: {{ .Values.panelDatabase.dsnKey }}
        - name: PANEL_DB_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ .Values.panelDatabase.secretName }}
              key: {{ .Values.panelDatabase.passwordKey }}
        - name: GOMAXPROCS
          valueFrom:
            resourceFieldRef:
              resource: limits.cpu
        {{- with .Values.manager.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        image: `, false},
	},
	// With watchNamespaces the ClusterRole grants no Secrets: a Role in each watched namespace
	// does (templates/rbac/watched-namespace-secrets.yaml), as config/namespaced.
	"templates/rbac/manager-role.yaml": {
		{`(?m)^- apiGroups:\n  - ""\n  resources:\n  - secrets\n  verbs:\n  - create\n  - delete\n  - get\n  - list\n  - patch\n  - watch\n`,
			`{{- if not .Values.watchNamespaces }}
- apiGroups:
  - ""
  resources:
  - secrets
  verbs:
  - create
  - delete
  - get
  - list
  - patch
  - watch
{{- end }}
`, false},
	},
}

// webhookEdits apply once config/default deploys the validating webhook (the plugin then
// generates templates/webhook): besides a cert-manager Certificate, the serving certificate may be
// a Secret the admin provides (webhook.certificate.secretName, with its CA in caBundle).
var webhookEdits = map[string][]edit{
	"templates/manager/manager.yaml": {
		// The manager serves webhooks only with --enable-webhooks (config/manager's args say it;
		// the chart's follow webhook.enabled); it has no "-1" port.
		{`(?m)^        \{\{- if \.Values\.webhook\.enabled \}\}\n        - --webhook-port=\{\{ \.Values\.webhook\.port \}\}\n` +
			`        \{\{- else \}\}\n        # Set -1 to disable the webhook server\n        - --webhook-port=-1\n        \{\{- end \}\}\n`,
			`        {{- if .Values.webhook.enabled }}
        - --enable-webhooks
        - --webhook-port={{ .Values.webhook.port }}
        {{- end }}
`, false},
		{`\{\{- if and \.Values\.certManager\.enabled \.Values\.webhook\.enabled \}\}`,
			`{{- if and .Values.webhook.enabled (or .Values.certManager.enabled .Values.webhook.certificate.secretName) }}`, true},
		{`(?m)^            secretName: webhook-server-cert$`,
			`            secretName: {{ if .Values.certManager.enabled }}webhook-server-cert{{ else }}` +
				`{{ .Values.webhook.certificate.secretName }}{{ end }}`, false},
	},
	"templates/webhook/validating-webhook-configuration.yaml": {
		// With watchNamespaces, objects elsewhere never wait on this release's webhook (another
		// release may serve them).
		{`(?m)^  failurePolicy: Fail\n`, `  failurePolicy: Fail
  {{- with $.Values.watchNamespaces }}
  namespaceSelector:
    matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: In
      values: {{ toJson . }}
  {{- end }}
`, true},
		{`(?m)^  clientConfig:\n`, `  clientConfig:
    {{- if not $.Values.certManager.enabled }}
    caBundle: {{ $.Values.webhook.certificate.caBundle }}
    {{- end }}
`, true},
	},
}

const webhookGuard = `{{- /* Generated by hack/helmchart while config/default deploys no webhook. */ -}}
{{- if .Values.webhook.enabled }}
{{- fail "webhook.enabled: this chart has no admission webhook yet (config/default deploys none); leave it false" }}
{{- end }}
`

const webhookCertificateCheck = `{{- /* Generated by hack/helmchart: the webhook's serving certificate comes from somewhere. */ -}}
{{- if and .Values.webhook.enabled (not .Values.certManager.enabled) }}
{{- if not (and .Values.webhook.certificate.secretName .Values.webhook.certificate.caBundle) }}
{{- fail "webhook.enabled: set certManager.enabled, or webhook.certificate.secretName ` +
	`(a kubernetes.io/tls Secret in the release namespace) and webhook.certificate.caBundle (its CA, base64 PEM)" }}
{{- end }}
{{- end }}
`

func hasPrefix(files map[string][]byte, prefix string) bool {
	for p := range files {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func readTree(root, prefix string, files map[string][]byte) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(filepath.Join(prefix, rel))] = b
		return nil
	})
}

// writeTree replaces dir with exactly files.
func writeTree(dir string, files map[string][]byte) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		b := files[p]
		if !bytes.HasSuffix(b, []byte("\n")) {
			b = append(b, '\n')
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
