package deploy

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// The Postgres variant: a Deployment of interchangeable pods on one database (store.backend
// postgres), beside the bbolt StatefulSet base.
var pgDir = filepath.Join(base, "postgres")

// pgManifests are the decoded manifests of the Postgres variant.
type pgManifests struct {
	kust    kustomization
	deploy  appsv1.Deployment
	svc     corev1.Service
	pdb     policyv1.PodDisruptionBudget
	secret  corev1.Secret  // secret.example.yaml: the shape, not applied
	config  map[string]any // the pods' config.yaml
	options map[string]any // tandem's own config.yaml
}

func loadPostgres(t *testing.T) *pgManifests {
	t.Helper()
	m := &pgManifests{}
	strict(t, filepath.Join(pgDir, "kustomization.yaml"), &m.kust)
	strict(t, filepath.Join(pgDir, "deployment.yaml"), &m.deploy)
	strict(t, filepath.Join(pgDir, "service.yaml"), &m.svc)
	strict(t, filepath.Join(pgDir, "poddisruptionbudget.yaml"), &m.pdb)
	strict(t, filepath.Join(pgDir, "secret.example.yaml"), &m.secret)
	m.config = flatKeys(t, filepath.Join(pgDir, "config.yaml"))
	m.options = flatKeys(t, "../config.yaml")
	return m
}

func (m *pgManifests) container(t *testing.T) corev1.Container {
	t.Helper()
	if cs := m.deploy.Spec.Template.Spec.Containers; len(cs) == 1 {
		return cs[0]
	}
	t.Fatalf("want a single container, got %d", len(m.deploy.Spec.Template.Spec.Containers))
	return corev1.Container{}
}

// setting is the pods' value of a key: the container's env, else their config.yaml, else tandem's
// default.
func (m *pgManifests) setting(c corev1.Container, key string) any {
	for _, e := range c.Env {
		if e.Name == envName(key) && e.ValueFrom == nil {
			return e.Value
		}
	}
	if v, ok := m.config[key]; ok {
		return v
	}
	return m.options[key]
}

// envName is the environment variable of a configuration key: store.url is TANDEM_STORE_URL.
func envName(key string) string {
	return "TANDEM_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// TestPostgresKustomizationListsEveryManifest: every manifest of the variant is applied but the
// Secret example (a placeholder must never replace the real Secret), and the Service is the base's.
func TestPostgresKustomizationListsEveryManifest(t *testing.T) {
	m := loadPostgres(t)
	entries, err := os.ReadDir(pgDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		switch n := e.Name(); {
		case e.IsDir(), !strings.HasSuffix(n, ".yaml"), n == "kustomization.yaml", n == "config.yaml", n == "secret.example.yaml":
		default:
			files = append(files, n)
		}
	}
	listed := append([]string(nil), m.kust.Resources...)
	sort.Strings(files)
	sort.Strings(listed)
	if fmt.Sprint(files) != fmt.Sprint(listed) {
		t.Fatalf("kustomization resources %v, files %v", listed, files)
	}
	for _, r := range m.kust.Resources {
		if strings.Contains(r, "secret") {
			t.Errorf("the kustomization applies %s: the Secret is created by hand", r)
		}
	}
	if len(m.kust.ConfigMapGenerator) != 1 || fmt.Sprint(m.kust.ConfigMapGenerator[0].Files) != "[config.yaml]" {
		t.Fatalf("configMapGenerator: %+v", m.kust.ConfigMapGenerator)
	}
	if vols := m.deploy.Spec.Template.Spec.Volumes; len(vols) != 1 || vols[0].ConfigMap == nil || vols[0].ConfigMap.Name != m.kust.ConfigMapGenerator[0].Name {
		t.Fatalf("the only volume must be the generated ConfigMap: %+v", vols)
	}
	// Kustomize loads no file outside the kustomization's directory, so the Service is a copy.
	mine, _ := os.ReadFile(filepath.Join(pgDir, "service.yaml"))
	theirs, _ := os.ReadFile(filepath.Join(base, "service.yaml"))
	if !bytes.Equal(mine, theirs) {
		t.Error("postgres/service.yaml differs from the base's service.yaml: keep the copy identical")
	}
}

func TestPostgresConfigUsesKnownKeys(t *testing.T) {
	m := loadPostgres(t)
	for k := range m.config {
		if _, ok := m.options[k]; !ok {
			t.Errorf("deploy/kubernetes/postgres/config.yaml sets %s, which tandem does not know", k)
		}
	}
	if _, ok := m.config["store.url"]; ok {
		t.Error("store.url holds a password: it comes from the Secret, never the ConfigMap")
	}
}

// TestPostgresDeploymentMatchesTandem: N >= 2 pods with no store volume, on Postgres, with the URL
// from the Secret, a node name of their own, and the base's ports, probes, drain time and
// security context.
func TestPostgresDeploymentMatchesTandem(t *testing.T) {
	m, b := loadPostgres(t), load(t)
	spec := m.deploy.Spec
	if spec.Replicas == nil || *spec.Replicas < 2 {
		t.Errorf("replicas %v: the variant exists to run several", spec.Replicas)
	}
	if spec.Strategy.RollingUpdate == nil || spec.Strategy.RollingUpdate.MaxUnavailable == nil || spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Error("a rollout must start a new pod before stopping an old one (maxUnavailable 0)")
	}
	if spec.Template.Labels["app.kubernetes.io/name"] != "tandem" || spec.Selector.MatchLabels["app.kubernetes.io/name"] != "tandem" {
		t.Errorf("pod labels %v, selector %v", spec.Template.Labels, spec.Selector.MatchLabels)
	}
	pod, c := spec.Template.Spec, m.container(t)
	bc := b.sts.Spec.Template.Spec.Containers[0]

	// No volume for the store: the database is the store.
	for _, v := range pod.Volumes {
		if v.ConfigMap == nil {
			t.Errorf("volume %s is not the config: the Postgres variant keeps no data on the pod", v.Name)
		}
	}
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != "/etc/tandem" {
			t.Errorf("mount %s at %s: only the config is mounted", vm.Name, vm.MountPath)
		}
	}
	if got := fmt.Sprint(m.setting(c, "store.backend")); got != "postgres" {
		t.Errorf("store.backend is %q, want postgres", got)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["TANDEM_STORE_BACKEND"]; e.Value != "postgres" {
		t.Errorf("TANDEM_STORE_BACKEND=%q, want postgres", e.Value)
	}
	u := env["TANDEM_STORE_URL"]
	if u.ValueFrom == nil || u.ValueFrom.SecretKeyRef == nil {
		t.Fatal("TANDEM_STORE_URL must come from a Secret (valueFrom.secretKeyRef)")
	}
	if ref := u.ValueFrom.SecretKeyRef; ref.Name != m.secret.Name || m.secret.StringData[ref.Key] == "" {
		t.Errorf("TANDEM_STORE_URL reads Secret %s key %s; secret.example.yaml is %s with keys %v", ref.Name, ref.Key, m.secret.Name, m.secret.StringData)
	}
	if n := env["TANDEM_NODE_NAME"]; n.ValueFrom == nil || n.ValueFrom.FieldRef == nil || n.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Error("TANDEM_NODE_NAME must be the pod's name (fieldRef metadata.name): unique per replica")
	}
	for name := range env {
		if !strings.HasPrefix(name, "TANDEM_") {
			continue
		}
		known := false
		for k := range m.options {
			known = known || envName(k) == name
		}
		if !known {
			t.Errorf("env %s is not a tandem configuration key", name)
		}
	}

	// As in the base: ports, probes, resources, security context, image, scrape annotations.
	if fmt.Sprint(c.Ports) != fmt.Sprint(bc.Ports) || !reflect.DeepEqual(c.Args, bc.Args) {
		t.Errorf("ports %v args %v, the base has %v %v", c.Ports, c.Args, bc.Ports, bc.Args)
	}
	for name, pair := range map[string][2]*corev1.Probe{
		"startup": {c.StartupProbe, bc.StartupProbe}, "liveness": {c.LivenessProbe, bc.LivenessProbe}, "readiness": {c.ReadinessProbe, bc.ReadinessProbe},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s probe %+v differs from the base's %+v", name, pair[0], pair[1])
		}
	}
	if !reflect.DeepEqual(c.Resources, bc.Resources) || !reflect.DeepEqual(c.SecurityContext, bc.SecurityContext) {
		t.Error("resources and the container's security context must be the base's")
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod must run as non-root with seccomp RuntimeDefault")
	}
	if c.Image != bc.Image {
		t.Errorf("image %s, the base runs %s: both variants deploy the same release", c.Image, bc.Image)
	}
	if !reflect.DeepEqual(spec.Template.Annotations, b.sts.Spec.Template.Annotations) {
		t.Errorf("annotations %v, the base has %v", spec.Template.Annotations, b.sts.Spec.Template.Annotations)
	}

	// The grace period covers server.shutdown_delay and both drains, as the base's does.
	dur := func(key string) time.Duration {
		d, err := time.ParseDuration(fmt.Sprint(m.setting(c, key)))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return d
	}
	delay := dur("server.shutdown_delay")
	if delay == 0 {
		t.Error("server.shutdown_delay is 0: endpoints still routing to a stopping pod meet a closed listener")
	}
	need := delay + dur("server.shutdown_timeout") + dur("jobs.shutdown_timeout")
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds must exceed %s", need)
	}
}

// TestPostgresSecretExample: the example is a placeholder (never a usable password) holding a
// Postgres URL, so the command in its comment makes what the Deployment reads.
func TestPostgresSecretExample(t *testing.T) {
	m := loadPostgres(t)
	if len(m.secret.StringData) != 1 {
		t.Fatalf("the example Secret has keys %v, want one: the URL", m.secret.StringData)
	}
	for k, v := range m.secret.StringData {
		p, err := url.Parse(v)
		if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
			t.Errorf("key %s: %q is not a postgres:// URL (%v)", k, v, err)
			continue
		}
		if pw, _ := p.User.Password(); pw != "CHANGE-ME" {
			t.Errorf("the example's password is %q: it must be the CHANGE-ME placeholder", pw)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(pgDir, "secret.example.yaml"))
	if !bytes.Contains(raw, []byte("kubectl create secret generic "+m.secret.Name)) {
		t.Error("secret.example.yaml must say how to create the real Secret (kubectl create secret generic ...)")
	}
}

// TestPostgresPodDisruptionBudget: the PDB selects the pods and lets a drain take one at a time
// for any replica count from 2 up to the Deployment's, never all of them.
func TestPostgresPodDisruptionBudget(t *testing.T) {
	m := loadPostgres(t)
	sel := m.pdb.Spec.Selector
	if sel == nil || len(sel.MatchLabels) == 0 {
		t.Fatal("the PodDisruptionBudget selects nothing")
	}
	for k, v := range sel.MatchLabels {
		if m.deploy.Spec.Template.Labels[k] != v {
			t.Errorf("the PDB selects %s=%s, which the pods do not carry", k, v)
		}
	}
	for n := 2; n <= int(*m.deploy.Spec.Replicas); n++ {
		if got := allowedDisruptions(t, m.pdb.Spec, n); got < 1 || got >= n {
			t.Errorf("with %d replicas the PDB allows %d disruption(s): want at least 1 and fewer than %d", n, got, n)
		}
	}
	if p := m.pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
		t.Errorf("unhealthyPodEvictionPolicy %v, want AlwaysAllow", p)
	}
}

// TestPostgresExamples: the HPA and KEDA examples scale the Deployment, never below 2 (the PDB's
// one disruption leaves a pod), and KEDA counts ready jobs in tandem's table with the pods' URL.
func TestPostgresExamples(t *testing.T) {
	m := loadPostgres(t)
	var hpa autoscalingv2.HorizontalPodAutoscaler
	strict(t, filepath.Join(base, "examples/postgres-hpa.yaml"), &hpa)
	if r := hpa.Spec.ScaleTargetRef; r.Kind != "Deployment" || r.Name != m.deploy.Name {
		t.Errorf("HPA targets %+v, want Deployment %s", r, m.deploy.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
		t.Errorf("HPA replicas %v..%d: want at least 2", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	var so scaledObject
	strict(t, filepath.Join(base, "examples/postgres-keda-scaledobject.yaml"), &so)
	if r := so.Spec.ScaleTargetRef; so.Kind != "ScaledObject" || r.Kind != "Deployment" || r.Name != m.deploy.Name || len(so.Spec.Triggers) != 1 {
		t.Fatalf("ScaledObject %+v", so)
	}
	if so.Spec.MinReplicaCount < 2 {
		t.Errorf("minReplicaCount %d: want at least 2", so.Spec.MinReplicaCount)
	}
	tr := so.Spec.Triggers[0]
	if tr.Type != "postgresql" {
		t.Fatalf("trigger %s, want postgresql", tr.Type)
	}
	// KEDA resolves connectionFromEnv in the target's container: it must be the URL from the Secret.
	var fromSecret bool
	for _, e := range m.container(t).Env {
		fromSecret = fromSecret || (e.Name == tr.Metadata["connectionFromEnv"] && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil)
	}
	if !fromSecret || tr.Metadata["connectionFromEnv"] != envName("store.url") {
		t.Errorf("connectionFromEnv %q: want %s, the container's URL from the Secret", tr.Metadata["connectionFromEnv"], envName("store.url"))
	}
	if v, err := strconv.ParseFloat(tr.Metadata["targetQueryValue"], 64); err != nil || v <= 0 {
		t.Errorf("targetQueryValue %q: want a positive number", tr.Metadata["targetQueryValue"])
	}
	// The query names tandem's table and columns as the store's migrations create them.
	q := tr.Metadata["query"]
	if !regexp.MustCompile(`(?i)^SELECT count\(\*\) FROM tandem_jobs WHERE .*\bstate = 'ready'`).MatchString(q) {
		t.Errorf("query %q: want SELECT count(*) FROM tandem_jobs WHERE ... state = 'ready'", q)
	}
	migrations, _ := filepath.Glob("../store/postgres/migrations/*.sql")
	if len(migrations) == 0 {
		t.Fatal("no ../store/postgres/migrations/*.sql to check the query against")
	}
	var schema []byte
	for _, f := range migrations {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		schema = append(schema, raw...)
	}
	table := regexp.MustCompile(`(?s)CREATE TABLE tandem_jobs \((.*?)\n\);`).FindSubmatch(schema)
	if table == nil {
		t.Fatal("the migrations create no tandem_jobs table")
	}
	for _, col := range []string{"queue", "state"} {
		if !regexp.MustCompile(`(?m)^\s+` + col + `\s+text\b`).Match(table[1]) {
			t.Errorf("tandem_jobs has no text column %s, which the KEDA query reads", col)
		}
	}
}
