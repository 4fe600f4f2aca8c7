// Package deploy holds tandem's deployment files and the tests that check them offline. It is a
// module of its own so that the Kubernetes API types never become dependencies of tandem.
package deploy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const base = "kubernetes"

// kustomization is the part of a Kustomization the test reads (decoded strictly).
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"configMapGenerator"`
}

// scaledObject mirrors KEDA's ScaledObject schema (no k8s.io type exists for it).
type scaledObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount int `json:"minReplicaCount"`
		MaxReplicaCount int `json:"maxReplicaCount"`
		CooldownPeriod  int `json:"cooldownPeriod"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

func strict(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// flatKeys flattens a YAML config to dotted keys (jobs.queues stays whole).
func flatKeys(t *testing.T, path string) map[string]any {
	t.Helper()
	var m map[string]any
	strict(t, path, &m)
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if sub, ok := v.(map[string]any); ok && prefix != "jobs.queues" {
			for k, vv := range sub {
				walk(strings.TrimPrefix(prefix+"."+k, "."), vv)
			}
			return
		}
		out[prefix] = v
	}
	walk("", m)
	return out
}

// setup decodes every manifest of the base.
type manifests struct {
	kust    kustomization
	sts     appsv1.StatefulSet
	svc     corev1.Service // the load-balanced HTTP Service
	pods    corev1.Service // the StatefulSet's headless governing Service
	pdb     policyv1.PodDisruptionBudget
	config  map[string]any // the pod's config.yaml
	options map[string]any // tandem's own config.yaml: every known key with its default
}

func load(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{}
	strict(t, filepath.Join(base, "kustomization.yaml"), &m.kust)
	strict(t, filepath.Join(base, "statefulset.yaml"), &m.sts)
	strict(t, filepath.Join(base, "service.yaml"), &m.svc)
	strict(t, filepath.Join(base, "service-headless.yaml"), &m.pods)
	strict(t, filepath.Join(base, "poddisruptionbudget.yaml"), &m.pdb)
	m.config = flatKeys(t, filepath.Join(base, "config.yaml"))
	m.options = flatKeys(t, "../config.yaml")
	return m
}

// setting is the pod's value of a key, or tandem's default.
func (m *manifests) setting(key string) any {
	if v, ok := m.config[key]; ok {
		return v
	}
	return m.options[key]
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	m := load(t)
	entries, _ := os.ReadDir(base)
	var files []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && strings.HasSuffix(n, ".yaml") && n != "kustomization.yaml" && n != "config.yaml" {
			files = append(files, n)
		}
	}
	listed := append([]string(nil), m.kust.Resources...)
	sort.Strings(files)
	sort.Strings(listed)
	if fmt.Sprint(files) != fmt.Sprint(listed) {
		t.Fatalf("kustomization resources %v, files %v", listed, files)
	}
	if len(m.kust.ConfigMapGenerator) != 1 || m.kust.ConfigMapGenerator[0].Files[0] != "config.yaml" {
		t.Fatalf("configMapGenerator: %+v", m.kust.ConfigMapGenerator)
	}
	if vols := m.sts.Spec.Template.Spec.Volumes; len(vols) != 1 || vols[0].ConfigMap == nil || vols[0].ConfigMap.Name != m.kust.ConfigMapGenerator[0].Name {
		t.Fatalf("the config volume does not use the generated ConfigMap: %+v", vols)
	}
}

func TestPodConfigUsesKnownKeys(t *testing.T) {
	m := load(t)
	for k := range m.config {
		if _, ok := m.options[k]; !ok {
			t.Errorf("deploy/kubernetes/config.yaml sets %s, which tandem does not know", k)
		}
	}
}

func port(t *testing.T, addr any) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(fmt.Sprint(addr))
	if err != nil {
		t.Fatalf("address %v: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return int32(n)
}

func TestStatefulSetMatchesTandem(t *testing.T) {
	m := load(t)
	spec := m.sts.Spec
	if spec.Replicas == nil || *spec.Replicas != 1 {
		t.Error("replicas must be 1 in the base")
	}
	pod := spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want a single container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != port(t, m.setting("server.addr")) || ports["admin"] != port(t, m.setting("admin.addr")) {
		t.Errorf("container ports %v vs server.addr %v, admin.addr %v", ports, m.setting("server.addr"), m.setting("admin.addr"))
	}
	// Probe paths must be routes tandem serves (api/openapi.yaml is checked against the router).
	spec2, _ := os.ReadFile("../api/openapi.yaml")
	for name, pr := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("%s probe missing", name)
			continue
		}
		if !bytes.Contains(spec2, []byte("\n  "+pr.HTTPGet.Path+":\n")) {
			t.Errorf("%s probe path %s is not a tandem route", name, pr.HTTPGet.Path)
		}
		if pr.HTTPGet.Port.StrVal != "http" {
			t.Errorf("%s probe must use the http port", name)
		}
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("liveness must be /healthz and readiness /readyz")
	}
	// The data volume holds store.path.
	storeDir := filepath.Dir(fmt.Sprint(m.setting("store.path")))
	var dataMounted bool
	for _, vm := range c.VolumeMounts {
		if vm.Name == "data" && vm.MountPath == storeDir {
			dataMounted = true
		}
	}
	if !dataMounted {
		t.Errorf("no volume named data mounted at %s (store.path %v)", storeDir, m.setting("store.path"))
	}
	if len(spec.VolumeClaimTemplates) != 1 || spec.VolumeClaimTemplates[0].Name != "data" ||
		fmt.Sprint(spec.VolumeClaimTemplates[0].Spec.AccessModes) != "[ReadWriteOncePod]" {
		t.Errorf("volumeClaimTemplates: %+v", spec.VolumeClaimTemplates)
	}
	// Env names are configuration keys.
	known := map[string]bool{}
	for k := range m.options {
		known["TANDEM_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = true
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "TANDEM_") && !known[e.Name] {
			t.Errorf("env %s is not a tandem configuration key", e.Name)
		}
	}
	// Grace period covers the wait before the drain (a preStop sleep, server.shutdown_delay) plus
	// both drains. A setting comes from the container's env, else the pod's config, else the default.
	dur := func(key string) time.Duration {
		v := m.setting(key)
		for _, e := range c.Env {
			if e.Name == "TANDEM_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_")) {
				v = e.Value
			}
		}
		d, err := time.ParseDuration(fmt.Sprint(v))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return d
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	delay := dur("server.shutdown_delay")
	if preStop+delay == 0 {
		t.Error("neither server.shutdown_delay nor a preStop sleep: endpoints still routing to the pod meet a closed listener")
	}
	if rp := c.ReadinessProbe; rp != nil && delay > 0 && delay <= time.Duration(rp.PeriodSeconds*max(1, rp.FailureThreshold))*time.Second {
		t.Errorf("server.shutdown_delay %s is too short for the readiness probe (every %ds, %d failures) to see the 503", delay, rp.PeriodSeconds, rp.FailureThreshold)
	}
	need := preStop + delay + dur("server.shutdown_timeout") + dur("jobs.shutdown_timeout")
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds must exceed %s", need)
	}
	// Restricted security context.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod must run as non-root with seccomp RuntimeDefault")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" {
		t.Error("container must have a read-only root, no privilege escalation and drop ALL capabilities")
	}
	if c.Resources.Limits.Cpu().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Error("CPU request and limit must be set: the limit sizes tandem")
	}
	ann := spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(int(ports["admin"])) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus annotations %v", ann)
	}
}

func TestServiceHidesAdmin(t *testing.T) {
	m := load(t)
	for _, svc := range []corev1.Service{m.svc, m.pods} {
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.StrVal == "admin" || p.TargetPort.IntVal == port(t, m.setting("admin.addr")) {
				t.Errorf("the Service %s exposes the admin port: %+v", svc.Name, p)
			}
		}
		if svc.Spec.Selector["app.kubernetes.io/name"] != m.sts.Spec.Template.Labels["app.kubernetes.io/name"] {
			t.Errorf("the Service %s does not select the StatefulSet's pods", svc.Name)
		}
	}
	if m.pdb.Spec.Selector == nil || m.pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "tandem" {
		t.Error("the PodDisruptionBudget does not select tandem")
	}
}

// TestStatefulSetServiceIsHeadless: the Service a StatefulSet names as serviceName gives its pods
// their DNS names only when it is headless; the load-balanced one is a separate Service.
func TestStatefulSetServiceIsHeadless(t *testing.T) {
	m := load(t)
	if m.sts.Spec.ServiceName != m.pods.Name {
		t.Fatalf("serviceName %q is not the headless Service %q", m.sts.Spec.ServiceName, m.pods.Name)
	}
	if m.pods.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("the StatefulSet's Service %s has clusterIP %q, want None (headless)", m.pods.Name, m.pods.Spec.ClusterIP)
	}
	if m.svc.Name == m.pods.Name || m.svc.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("the HTTP Service %s must be a load-balanced one beside the headless %s", m.svc.Name, m.pods.Name)
	}
}

// allowedDisruptions is what the PDB lets voluntary evictions take from replicas ready pods, as the
// disruption controller counts it (integer budgets only).
func allowedDisruptions(t *testing.T, pdb policyv1.PodDisruptionBudgetSpec, replicas int) int {
	t.Helper()
	switch {
	case pdb.MinAvailable != nil && pdb.MaxUnavailable == nil && pdb.MinAvailable.Type == intstr.Int:
		return max(replicas-pdb.MinAvailable.IntValue(), 0)
	case pdb.MaxUnavailable != nil && pdb.MinAvailable == nil && pdb.MaxUnavailable.Type == intstr.Int:
		return max(pdb.MaxUnavailable.IntValue(), 0) // of replicas desired, all ready here
	}
	t.Fatalf("the PDB must set one of minAvailable and maxUnavailable, as an integer: %+v", pdb)
	return 0
}

// TestPodDisruptionBudgetProtects: a drain never takes the last ready tandem (with the base's one
// replica, it waits for an operator), drains proceed once there are more, and a pod that is not
// ready never blocks one.
func TestPodDisruptionBudgetProtects(t *testing.T) {
	m := load(t)
	replicas := int(*m.sts.Spec.Replicas)
	if n := allowedDisruptions(t, m.pdb.Spec, replicas); n != replicas-1 {
		t.Errorf("with %d replica(s) the PDB allows %d disruption(s), want %d: it must keep one pod", replicas, n, replicas-1)
	}
	if n := allowedDisruptions(t, m.pdb.Spec, 3); n < 1 {
		t.Errorf("with 3 replicas the PDB allows %d disruptions: drains could never proceed", n)
	}
	if p := m.pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
		t.Errorf("unhealthyPodEvictionPolicy %v, want AlwaysAllow: a pod that is not ready must not block a drain", p)
	}
}

// TestImageIsPinned: the pods run a release (a version tag or a digest), never a moving tag.
func TestImageIsPinned(t *testing.T) {
	m := load(t)
	image := m.sts.Spec.Template.Spec.Containers[0].Image
	if !regexp.MustCompile(`^ghcr\.io/tandem-run/tandem(:v\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})$`).MatchString(image) {
		t.Errorf("image %q: want ghcr.io/tandem-run/tandem:vX.Y.Z or @sha256:..., never :latest or no tag", image)
	}
}

func TestExamples(t *testing.T) {
	m := load(t)
	var hpa autoscalingv2.HorizontalPodAutoscaler
	strict(t, filepath.Join(base, "examples/hpa.yaml"), &hpa)
	if hpa.Spec.ScaleTargetRef.Kind != "StatefulSet" || hpa.Spec.ScaleTargetRef.Name != m.sts.Name {
		t.Errorf("HPA targets %+v", hpa.Spec.ScaleTargetRef)
	}
	var so scaledObject
	strict(t, filepath.Join(base, "examples/keda-scaledobject.yaml"), &so)
	if so.Kind != "ScaledObject" || so.Spec.ScaleTargetRef.Name != m.sts.Name || len(so.Spec.Triggers) != 1 {
		t.Fatalf("ScaledObject %+v", so)
	}
	if q := so.Spec.Triggers[0].Metadata["query"]; !strings.Contains(q, "tandem_queue_ready_jobs") {
		t.Errorf("KEDA query %q does not use tandem's queue depth metric", q)
	}
}

// TestSystemdStopCoversDrain: the unit's TimeoutStopSec exceeds server.shutdown_delay plus both
// drains, with the delay the unit sets (Environment=TANDEM_SERVER_SHUTDOWN_DELAY=...) or tandem's
// default, so systemd never SIGKILLs a drain half-way.
func TestSystemdStopCoversDrain(t *testing.T) {
	m := load(t)
	raw, err := os.ReadFile("systemd/tandem.service")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]string{}
	var stop time.Duration
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "TimeoutStopSec="); ok {
			if stop, err = time.ParseDuration(v); err != nil {
				t.Fatalf("TimeoutStopSec=%s: %v", v, err)
			}
		}
		if v, ok := strings.CutPrefix(line, "Environment="); ok {
			if k, val, ok := strings.Cut(v, "="); ok {
				set[k] = val
			}
		}
	}
	dur := func(key string) time.Duration {
		v := fmt.Sprint(m.options[key])
		if e, ok := set["TANDEM_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))]; ok {
			v = e
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return d
	}
	need := dur("server.shutdown_delay") + dur("server.shutdown_timeout") + dur("jobs.shutdown_timeout")
	if stop <= need {
		t.Errorf("TimeoutStopSec %s must exceed shutdown_delay + both shutdown timeouts = %s", stop, need)
	}
}
