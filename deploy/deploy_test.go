package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The path every deployment gives popbridge's config (the binary's default).
const configPath = "/etc/popbridge/config.yaml"

// ---------------------------------------------------------------------------
// YAML helpers: documents decoded into map[string]any and walked by key.

// decodeAll decodes every document of a (multi-document) YAML file,
// skipping empty ones.
func decodeAll(t *testing.T, file string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAllBytes(t, file, data)
}

func decodeAllBytes(t *testing.T, name string, data []byte) []map[string]any {
	t.Helper()
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func getMap(v any, keys ...string) map[string]any {
	m, _ := get(v, keys...).(map[string]any)
	return m
}

func getList(v any, keys ...string) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func getString(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

// getBool reports the boolean at keys and whether it is set at all.
func getBool(v any, keys ...string) (value, set bool) {
	b, ok := get(v, keys...).(bool)
	return b, ok
}

func getInt(v any, keys ...string) (int, bool) {
	n, ok := get(v, keys...).(int)
	return n, ok
}

// stringMap converts a label map; a non-string value is reported as "".
func stringMap(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, _ := v.(string)
		out[k] = s
	}
	return out
}

// subset reports whether every label of sel is in labels with the same value.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

func portOf(t *testing.T, key, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%s %q: %v", key, hostport, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: %v", key, hostport, err)
	}
	return n
}

// The tests check the files as an operator would: they build the binary and
// ask it, since `popbridge check-config` runs popbridge's own validation
// and prints the effective config, defaults included, which the tests then
// read.

var popbridgeBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if popbridgeBuild.dir != "" {
		os.RemoveAll(popbridgeBuild.dir)
	}
	os.Exit(code)
}

// popbridgeBinary builds cmd/popbridge once per test run.
func popbridgeBinary(t *testing.T) string {
	t.Helper()
	b := &popbridgeBuild
	b.once.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			b.err = err
			return
		}
		if b.dir, b.err = os.MkdirTemp("", "popbridge-deploy-test"); b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "popbridge")
		out, err := exec.Command(goCmd, "build", "-o", b.bin, "../cmd/popbridge").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build ./cmd/popbridge: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// effectiveConfig is the part of check-config's output the tests compare
// with the manifests (keys as in config.yaml.example).
type effectiveConfig struct {
	Listeners []configListener `yaml:"listeners"`
	TLS       struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	} `yaml:"tls"`
	Upstream struct {
		Address string `yaml:"address"`
		TLS     string `yaml:"tls"`
	} `yaml:"upstream"`
	State struct {
		Driver string `yaml:"driver"`
		Path   string `yaml:"path"`
		DSN    string `yaml:"dsn"` // REDACTED in check-config's output
	} `yaml:"state"`
	Limits struct {
		MaxConnections int           `yaml:"max_connections"`
		IdleTimeout    time.Duration `yaml:"idle_timeout"`
		TrustedProxies []string      `yaml:"trusted_proxies"`
	} `yaml:"limits"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	Metrics       struct {
		Address string `yaml:"address"`
	} `yaml:"metrics"`
}

// configListener is one entry of listeners:.
type configListener struct {
	Address       string `yaml:"address"`
	TLS           string `yaml:"tls"`
	ProxyProtocol bool   `yaml:"proxy_protocol"`
}

// parseConfig runs `popbridge check-config` on a config file's content,
// without the POPBRIDGE_ variables of the test's environment, and returns
// the effective config it prints.
func parseConfig(t *testing.T, name string, data []byte) *effectiveConfig {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(popbridgeBinary(t), "check-config", "-config", file)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POPBRIDGE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s does not pass popbridge's validation (check-config: %v):\n%s", name, err, stderr.Bytes())
	}
	var cfg effectiveConfig
	if err := yaml.Unmarshal(stdout.Bytes(), &cfg); err != nil {
		t.Fatalf("%s: reading check-config's output: %v\n%s", name, err, stdout.Bytes())
	}
	return &cfg
}

// defaultConfig is the effective config of a file that sets only what is
// required.
func defaultConfig(t *testing.T) *effectiveConfig {
	t.Helper()
	return parseConfig(t, "a minimal config", []byte("upstream:\n  address: imap.example.net:993\n"))
}

// under reports whether file lies inside dir.
func under(file, dir string) bool {
	rel, err := filepath.Rel(dir, file)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel)
}

// ---------------------------------------------------------------------------
// Kubernetes

const k8sDir = "kubernetes"

type k8sObject struct {
	file string
	doc  map[string]any
}

func (o k8sObject) kind() string { return getString(o.doc, "kind") }
func (o k8sObject) name() string { return getString(o.doc, "metadata", "name") }
func (o k8sObject) id() string   { return o.kind() + "/" + o.name() }

type cluster struct {
	objects []k8sObject
	byID    map[string]k8sObject
}

func (c *cluster) ofKind(kind string) []k8sObject {
	var out []k8sObject
	for _, o := range c.objects {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func (c *cluster) lookup(kind, name string) (k8sObject, bool) {
	o, ok := c.byID[kind+"/"+name]
	return o, ok
}

// kustomizationResources returns the resources: list of kustomization.yaml.
func kustomizationResources(t *testing.T) []string {
	t.Helper()
	docs := decodeAll(t, filepath.Join(k8sDir, "kustomization.yaml"))
	if len(docs) != 1 {
		t.Fatalf("kustomization.yaml: %d documents, want 1", len(docs))
	}
	var res []string
	for _, r := range getList(docs[0], "resources") {
		s, ok := r.(string)
		if !ok || s == "" {
			t.Fatalf("kustomization.yaml: resource %v is not a file name", r)
		}
		res = append(res, s)
	}
	return res
}

// loadCluster reads every object of every resource of kustomization.yaml.
func loadCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{byID: map[string]k8sObject{}}
	for _, r := range kustomizationResources(t) {
		for _, doc := range decodeAll(t, filepath.Join(k8sDir, r)) {
			o := k8sObject{file: r, doc: doc}
			if _, dup := c.byID[o.id()]; dup {
				t.Errorf("%s: %s is defined twice", r, o.id())
			}
			c.objects = append(c.objects, o)
			c.byID[o.id()] = o
		}
	}
	if len(c.objects) == 0 {
		t.Fatal("no Kubernetes objects")
	}
	return c
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	listed := map[string]bool{}
	for _, r := range kustomizationResources(t) {
		if listed[r] {
			t.Errorf("kustomization.yaml lists %s twice", r)
		}
		listed[r] = true
		if _, err := os.Stat(filepath.Join(k8sDir, r)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.y*ml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base != "kustomization.yaml" && !listed[base] {
			t.Errorf("%s is not listed in kustomization.yaml: kubectl apply -k would leave it out", base)
		}
	}
}

// The apiVersion the API serves for each kind used here (the GA versions).
var wantAPIVersion = map[string]string{
	"ConfigMap":             "v1",
	"Secret":                "v1",
	"Service":               "v1",
	"PersistentVolumeClaim": "v1",
	"Deployment":            "apps/v1",
	"PodDisruptionBudget":   "policy/v1",
	"NetworkPolicy":         "networking.k8s.io/v1",
}

func TestKubernetesObjects(t *testing.T) {
	c := loadCluster(t)
	if len(c.ofKind("Deployment")) == 0 {
		t.Fatal("no Deployment")
	}
	for _, o := range c.objects {
		t.Run(o.file+":"+o.id(), func(t *testing.T) {
			if o.kind() == "" || o.name() == "" || getString(o.doc, "apiVersion") == "" {
				t.Fatalf("apiVersion, kind and metadata.name are required; got %q, %q, %q",
					getString(o.doc, "apiVersion"), o.kind(), o.name())
			}
			want, known := wantAPIVersion[o.kind()]
			if !known {
				t.Fatalf("kind %s has no checks in deploy_test.go: add them", o.kind())
			}
			if got := getString(o.doc, "apiVersion"); got != want {
				t.Errorf("apiVersion %q, want %q", got, want)
			}
			if ns := getString(o.doc, "metadata", "namespace"); ns != "" {
				t.Errorf("metadata.namespace %q: leave the namespace to kustomization.yaml", ns)
			}
			switch o.kind() {
			case "Deployment":
				checkDeployment(t, c, o)
			case "Service":
				checkService(t, c, o)
			case "PodDisruptionBudget":
				checkPDB(t, c, o)
			case "NetworkPolicy":
				checkNetworkPolicy(t, c, o)
			case "PersistentVolumeClaim":
				checkPVC(t, o)
			case "Secret":
				checkSecret(t, o)
			case "ConfigMap":
				checkConfigMap(t, o)
			}
		})
	}
}

// podLabels returns a Deployment's pod template labels.
func podLabels(d k8sObject) map[string]string {
	return stringMap(getMap(d.doc, "spec", "template", "metadata", "labels"))
}

// selected returns the Deployments whose pods carry every label of sel.
func (c *cluster) selected(sel map[string]string) []k8sObject {
	var out []k8sObject
	for _, d := range c.ofKind("Deployment") {
		if subset(sel, podLabels(d)) {
			out = append(out, d)
		}
	}
	return out
}

type containerPort struct {
	number   int
	protocol string
}

// containerPorts returns the named and numbered ports of a container.
func containerPorts(t *testing.T, ctr map[string]any) (byName map[string]containerPort, byNumber map[int]containerPort) {
	t.Helper()
	byName, byNumber = map[string]containerPort{}, map[int]containerPort{}
	for _, p := range getList(ctr, "ports") {
		n, ok := getInt(p, "containerPort")
		if !ok || n < 1 || n > 65535 {
			t.Errorf("container %s: port %v has no valid containerPort", getString(ctr, "name"), p)
			continue
		}
		cp := containerPort{number: n, protocol: getString(p, "protocol")}
		if cp.protocol == "" {
			cp.protocol = "TCP"
		}
		if _, dup := byNumber[n]; dup {
			t.Errorf("container %s: port %d declared twice", getString(ctr, "name"), n)
		}
		byNumber[n] = cp
		if name := getString(p, "name"); name != "" {
			// IANA_SVC_NAME, as the API validates it.
			if len(name) > 15 || !regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`).MatchString(name) {
				t.Errorf("container %s: port name %q is not a valid IANA service name", getString(ctr, "name"), name)
			}
			if _, dup := byName[name]; dup {
				t.Errorf("container %s: port name %q declared twice", getString(ctr, "name"), name)
			}
			byName[name] = cp
		}
	}
	return byName, byNumber
}

// resolvePort finds a port given by number or by name.
func resolvePort(ref any, byName map[string]containerPort, byNumber map[int]containerPort) (containerPort, bool) {
	switch r := ref.(type) {
	case int:
		p, ok := byNumber[r]
		return p, ok
	case string:
		if n, err := strconv.Atoi(r); err == nil {
			p, ok := byNumber[n]
			return p, ok
		}
		p, ok := byName[r]
		return p, ok
	}
	return containerPort{}, false
}

// podContainers returns every container of every Deployment selected by sel.
func (c *cluster) selectedContainers(sel map[string]string) []map[string]any {
	var out []map[string]any
	for _, d := range c.selected(sel) {
		for _, ctr := range getList(d.doc, "spec", "template", "spec", "containers") {
			if m, ok := ctr.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// portOnPods reports whether ref names a port of one of the containers.
func portOnPods(t *testing.T, ref any, containers []map[string]any) (containerPort, bool) {
	for _, ctr := range containers {
		byName, byNumber := containerPorts(t, ctr)
		if p, ok := resolvePort(ref, byName, byNumber); ok {
			return p, true
		}
	}
	return containerPort{}, false
}

// mountedFile is a file a volume mount puts into a container.
type mountedFile struct {
	source string // e.g. ConfigMap/popbridge-config
	key    string
}

// objectKeys returns the data keys of a ConfigMap or Secret.
func objectKeys(o k8sObject) map[string]bool {
	keys := map[string]bool{}
	for _, field := range []string{"data", "stringData", "binaryData"} {
		for k := range getMap(o.doc, field) {
			keys[k] = true
		}
	}
	return keys
}

// volumeFiles lists the files (relative path → source) of a ConfigMap,
// Secret or projected volume, checking that what it names exists.
func volumeFiles(t *testing.T, c *cluster, vname string, vol map[string]any) map[string]mountedFile {
	t.Helper()
	files := map[string]mountedFile{}
	add := func(kind, name string, items []any, optional bool) {
		o, ok := c.lookup(kind, name)
		if !ok {
			if !optional {
				t.Errorf("volume %s: %s/%s is not among the manifests", vname, kind, name)
			}
			return
		}
		keys := objectKeys(o)
		if len(items) == 0 {
			for k := range keys {
				files[k] = mountedFile{o.id(), k}
			}
			return
		}
		for _, it := range items {
			k, p := getString(it, "key"), getString(it, "path")
			if !keys[k] {
				t.Errorf("volume %s: %s has no key %q", vname, o.id(), k)
			}
			if p == "" || path.IsAbs(p) || strings.HasPrefix(path.Clean(p), "..") {
				t.Errorf("volume %s: item path %q must be relative", vname, p)
			}
			files[path.Clean(p)] = mountedFile{o.id(), k}
		}
	}
	optional := func(m map[string]any) bool { b, _ := getBool(m, "optional"); return b }
	if cm := getMap(vol, "configMap"); cm != nil {
		add("ConfigMap", getString(cm, "name"), getList(cm, "items"), optional(cm))
	}
	if s := getMap(vol, "secret"); s != nil {
		add("Secret", getString(s, "secretName"), getList(s, "items"), optional(s))
	}
	for _, src := range getList(vol, "projected", "sources") {
		if cm := getMap(src, "configMap"); cm != nil {
			add("ConfigMap", getString(cm, "name"), getList(cm, "items"), optional(cm))
		}
		if s := getMap(src, "secret"); s != nil {
			add("Secret", getString(s, "name"), getList(s, "items"), optional(s))
		}
	}
	return files
}

func checkDeployment(t *testing.T, c *cluster, d k8sObject) {
	spec := getMap(d.doc, "spec")
	sel := stringMap(getMap(spec, "selector", "matchLabels"))
	labels := podLabels(d)
	if len(sel) == 0 {
		t.Error("spec.selector.matchLabels is empty")
	}
	if !subset(sel, labels) {
		t.Errorf("spec.selector.matchLabels %v does not select the pod template's labels %v", sel, labels)
	}
	pod := getMap(spec, "template", "spec")
	podSC := getMap(pod, "securityContext")

	// Volumes, and that what they name exists.
	volumes := map[string]map[string]any{}
	pvcMounted := map[string]bool{} // volume name → is a PVC
	for _, v := range getList(pod, "volumes") {
		vm, _ := v.(map[string]any)
		name := getString(vm, "name")
		if name == "" {
			t.Errorf("volume without a name: %v", v)
			continue
		}
		volumes[name] = vm
		if claim := getString(vm, "persistentVolumeClaim", "claimName"); claim != "" {
			pvcMounted[name] = true
			if _, ok := c.lookup("PersistentVolumeClaim", claim); !ok {
				t.Errorf("volume %s: PersistentVolumeClaim/%s is not among the manifests", name, claim)
			}
		}
	}

	containers := getList(pod, "containers")
	if len(containers) == 0 {
		t.Fatal("spec.template.spec.containers is empty")
	}
	for _, ctrAny := range containers {
		ctr, _ := ctrAny.(map[string]any)
		cname := getString(ctr, "name")
		if cname == "" || getString(ctr, "image") == "" {
			t.Errorf("container %v: name and image are required", ctrAny)
			continue
		}
		t.Run("container "+cname, func(t *testing.T) {
			checkContainer(t, c, d, ctr, podSC, volumes, pvcMounted)
		})
	}

	// The bolt store belongs to one process: one replica, and the old pod
	// must be gone before the new one opens the file.
	if len(pvcMounted) > 0 {
		replicas, set := getInt(spec, "replicas")
		if !set {
			replicas = 1
		}
		if replicas != 1 {
			t.Errorf("replicas %d with a PersistentVolumeClaim (the bolt store): only 1 instance may open it", replicas)
		}
		if s := getString(spec, "strategy", "type"); s != "Recreate" {
			t.Errorf("strategy %q with a PersistentVolumeClaim: want Recreate (a rolling update would start a second instance on the same store)", s)
		}
	}
}

func checkContainer(t *testing.T, c *cluster, d k8sObject, ctr, podSC map[string]any, volumes map[string]map[string]any, pvcVolume map[string]bool) {
	byName, byNumber := containerPorts(t, ctr)

	// Probes on declared ports.
	probePorts := map[int]bool{}
	for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
		p := getMap(ctr, probe)
		if p == nil {
			if probe != "startupProbe" {
				t.Errorf("no %s", probe)
			}
			continue
		}
		var ref any
		switch {
		case getMap(p, "httpGet") != nil:
			ref = get(p, "httpGet", "port")
			if getString(p, "httpGet", "path") == "" {
				t.Errorf("%s.httpGet has no path", probe)
			}
		case getMap(p, "tcpSocket") != nil:
			ref = get(p, "tcpSocket", "port")
		case getMap(p, "grpc") != nil:
			ref = get(p, "grpc", "port")
		default:
			t.Errorf("%s: no httpGet, tcpSocket or grpc handler", probe)
			continue
		}
		port, ok := resolvePort(ref, byName, byNumber)
		if !ok {
			t.Errorf("%s: port %v is not a port of the container", probe, ref)
			continue
		}
		probePorts[port.number] = true
	}

	// Security: non-root, read-only root, no escalation, no capabilities
	// beyond NET_BIND_SERVICE (and that only for ports below 1024).
	sc := getMap(ctr, "securityContext")
	nonRoot, set := getBool(sc, "runAsNonRoot")
	if !set {
		nonRoot, _ = getBool(podSC, "runAsNonRoot")
	}
	if !nonRoot {
		t.Error("runAsNonRoot is not true (container or pod securityContext)")
	}
	for _, s := range []map[string]any{podSC, sc} {
		if uid, ok := getInt(s, "runAsUser"); ok && uid == 0 {
			t.Error("runAsUser: 0")
		}
	}
	if ro, _ := getBool(sc, "readOnlyRootFilesystem"); !ro {
		t.Error("securityContext.readOnlyRootFilesystem is not true")
	}
	if esc, set := getBool(sc, "allowPrivilegeEscalation"); !set || esc {
		t.Error("securityContext.allowPrivilegeEscalation is not false")
	}
	if priv, _ := getBool(sc, "privileged"); priv {
		t.Error("securityContext.privileged is true")
	}
	if !slices.Contains(getList(sc, "capabilities", "drop"), any("ALL")) {
		t.Error("securityContext.capabilities.drop does not contain ALL")
	}
	lowPort := false
	for n := range byNumber {
		lowPort = lowPort || n < 1024
	}
	for _, capAny := range getList(sc, "capabilities", "add") {
		if capAny != "NET_BIND_SERVICE" || !lowPort {
			t.Errorf("securityContext.capabilities.add %v: only NET_BIND_SERVICE, and only for ports below 1024", capAny)
		}
	}

	// Resources.
	for _, r := range [][]string{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
		if get(ctr, append([]string{"resources"}, r...)...) == nil {
			t.Errorf("resources.%s is not set", strings.Join(r, "."))
		}
	}

	// Volume mounts, and the files they provide.
	files := map[string]mountedFile{}
	var pvcMounts []string
	for _, m := range getList(ctr, "volumeMounts") {
		name, mountPath, subPath := getString(m, "name"), getString(m, "mountPath"), getString(m, "subPath")
		vol, ok := volumes[name]
		if !ok {
			t.Errorf("volumeMount %s: no such volume", name)
			continue
		}
		if !path.IsAbs(mountPath) {
			t.Errorf("volumeMount %s: mountPath %q is not absolute", name, mountPath)
		}
		if pvcVolume[name] {
			pvcMounts = append(pvcMounts, mountPath)
			continue
		}
		for rel, src := range volumeFiles(t, c, name, vol) {
			switch {
			case subPath == "":
				files[path.Join(mountPath, rel)] = src
			case rel == subPath:
				files[mountPath] = src
			}
		}
	}

	// The config popbridge reads, and that the manifests agree with it.
	cfgFile := configPath
	if args := getList(ctr, "args"); len(args) > 0 {
		if args[0] != "serve" {
			t.Errorf("args %v: want serve", args)
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-config" || args[i] == "--config" {
				cfgFile, _ = args[i+1].(string)
			}
		}
	}
	src, ok := files[cfgFile]
	if !ok {
		t.Fatalf("no volume provides the config file %s", cfgFile)
	}
	kind, name, _ := strings.Cut(src.source, "/")
	owner, _ := c.lookup(kind, name)
	data := getString(owner.doc, "data", src.key)
	cfg := parseConfig(t, src.source+" "+src.key, []byte(data))

	for i, l := range cfg.Listeners {
		if _, ok := byNumber[portOf(t, fmt.Sprintf("listeners.%d.address", i), l.Address)]; !ok {
			t.Errorf("listeners.%d.address %s: not a containerPort", i, l.Address)
		}
	}
	if cfg.Metrics.Address == "" {
		t.Error("metrics.address is not set: the probes have nothing to ask")
	} else {
		mp := portOf(t, "metrics.address", cfg.Metrics.Address)
		if _, ok := byNumber[mp]; !ok {
			t.Errorf("metrics.address %s: not a containerPort", cfg.Metrics.Address)
		}
		for p := range probePorts {
			if p != mp {
				t.Errorf("a probe asks port %d, but /healthz and /readyz are on metrics.address %s", p, cfg.Metrics.Address)
			}
		}
	}
	for key, f := range map[string]string{"tls.cert_file": cfg.TLS.CertFile, "tls.key_file": cfg.TLS.KeyFile} {
		if _, ok := files[f]; f != "" && !ok {
			t.Errorf("%s %s: no volume provides it", key, f)
		}
	}
	if cfg.State.Driver == "bolt" {
		onPVC := false
		for _, mp := range pvcMounts {
			onPVC = onPVC || under(cfg.State.Path, mp)
		}
		if !onPVC {
			t.Errorf("state.path %s is not on a PersistentVolumeClaim (mounted at %v): UIDLs would be lost with the pod", cfg.State.Path, pvcMounts)
		}
	}
	grace, set := getInt(d.doc, "spec", "template", "spec", "terminationGracePeriodSeconds")
	if !set {
		grace = 30
	}
	if time.Duration(grace)*time.Second <= cfg.ShutdownGrace {
		t.Errorf("terminationGracePeriodSeconds %d is not above shutdown_grace %s: sessions would be killed before they may finish", grace, cfg.ShutdownGrace)
	}
	// The egress policy must let it reach the upstream.
	upstreamPort := portOf(t, "upstream.address", cfg.Upstream.Address)
	for _, np := range c.ofKind("NetworkPolicy") {
		if !subset(stringMap(getMap(np.doc, "spec", "podSelector", "matchLabels")), podLabels(d)) ||
			!slices.Contains(getList(np.doc, "spec", "policyTypes"), any("Egress")) {
			continue
		}
		allowed := false
		for _, rule := range getList(np.doc, "spec", "egress") {
			ports := getList(rule, "ports")
			if len(ports) == 0 {
				allowed = true
			}
			for _, p := range ports {
				if n, _ := getInt(p, "port"); n == upstreamPort {
					allowed = true
				}
			}
		}
		if !allowed {
			t.Errorf("%s allows no egress to the upstream's port %d (upstream.address %s)", np.id(), upstreamPort, cfg.Upstream.Address)
		}
	}
}

func checkService(t *testing.T, c *cluster, o k8sObject) {
	sel := stringMap(getMap(o.doc, "spec", "selector"))
	if len(sel) == 0 {
		t.Fatal("spec.selector is empty")
	}
	containers := c.selectedContainers(sel)
	if len(containers) == 0 {
		t.Fatalf("spec.selector %v matches no Deployment's pods", sel)
	}
	ports := getList(o.doc, "spec", "ports")
	if len(ports) == 0 {
		t.Fatal("spec.ports is empty")
	}
	for _, p := range ports {
		port, ok := getInt(p, "port")
		if !ok || port < 1 || port > 65535 {
			t.Errorf("port %v: no valid port", p)
			continue
		}
		if len(ports) > 1 && getString(p, "name") == "" {
			t.Errorf("port %d: a Service with several ports must name each", port)
		}
		target := get(p, "targetPort")
		if target == nil {
			target = port
		}
		cp, ok := portOnPods(t, target, containers)
		if !ok {
			t.Errorf("port %d: targetPort %v is not a port of the selected containers", port, target)
			continue
		}
		proto := getString(p, "protocol")
		if proto == "" {
			proto = "TCP"
		}
		if proto != cp.protocol {
			t.Errorf("port %d: protocol %s, the container port is %s", port, proto, cp.protocol)
		}
	}
}

func checkPDB(t *testing.T, c *cluster, o k8sObject) {
	spec := getMap(o.doc, "spec")
	sel := stringMap(getMap(spec, "selector", "matchLabels"))
	if len(sel) == 0 {
		t.Fatal("spec.selector.matchLabels is empty")
	}
	deps := c.selected(sel)
	if len(deps) == 0 {
		t.Fatalf("spec.selector %v matches no Deployment's pods", sel)
	}
	_, hasMin := spec["minAvailable"]
	_, hasMax := spec["maxUnavailable"]
	if hasMin == hasMax {
		t.Fatal("exactly one of minAvailable and maxUnavailable is required")
	}
	for _, d := range deps {
		replicas, set := getInt(d.doc, "spec", "replicas")
		if !set {
			replicas = 1
		}
		if minAvail, ok := getInt(spec, "minAvailable"); ok && minAvail >= replicas {
			t.Errorf("minAvailable %d with %d replica(s) of %s: no node could ever be drained", minAvail, replicas, d.id())
		}
		if maxUnavail, ok := getInt(spec, "maxUnavailable"); ok && maxUnavail == 0 {
			t.Errorf("maxUnavailable 0: no node running %s could ever be drained", d.id())
		}
	}
}

func checkNetworkPolicy(t *testing.T, c *cluster, o k8sObject) {
	spec := getMap(o.doc, "spec")
	if _, ok := spec["podSelector"].(map[string]any); !ok {
		t.Fatal("spec.podSelector is required (use {} for every pod)")
	}
	containers := c.selectedContainers(stringMap(getMap(spec, "podSelector", "matchLabels")))
	if len(containers) == 0 {
		t.Fatal("spec.podSelector matches no Deployment's pods")
	}
	for _, pt := range getList(spec, "policyTypes") {
		if pt != "Ingress" && pt != "Egress" {
			t.Errorf("policyTypes: %v is neither Ingress nor Egress", pt)
		}
	}
	// Ingress ports are the pods' ports, not the Service's.
	for _, rule := range getList(spec, "ingress") {
		for _, p := range getList(rule, "ports") {
			ref := get(p, "port")
			if _, ok := portOnPods(t, ref, containers); !ok {
				t.Errorf("ingress port %v is not a port of the selected pods (a Service port instead of the pod's?)", ref)
			}
		}
	}
	if slices.Contains(getList(spec, "policyTypes"), any("Egress")) {
		dns := false
		for _, rule := range getList(spec, "egress") {
			for _, p := range getList(rule, "ports") {
				n, _ := getInt(p, "port")
				dns = dns || (n == 53 && getString(p, "protocol") == "UDP")
			}
		}
		if !dns {
			t.Error("egress allows no DNS (UDP 53): the upstream's name would not resolve")
		}
	}
}

var quantity = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$`)

func checkPVC(t *testing.T, o k8sObject) {
	modes := getList(o.doc, "spec", "accessModes")
	if len(modes) == 0 {
		t.Error("spec.accessModes is empty")
	}
	for _, m := range modes {
		switch m {
		case "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod":
		default:
			t.Errorf("spec.accessModes: unknown mode %v", m)
		}
	}
	storage := fmt.Sprint(get(o.doc, "spec", "resources", "requests", "storage"))
	if !quantity.MatchString(storage) {
		t.Errorf("spec.resources.requests.storage %q is not a quantity", storage)
	}
}

func checkSecret(t *testing.T, o k8sObject) {
	typ := getString(o.doc, "type")
	if typ == "" {
		t.Error("type is not set")
	}
	for k, v := range getMap(o.doc, "data") {
		s, _ := v.(string)
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			t.Errorf("data.%s is not base64: %v", k, err)
		}
	}
	for k, v := range getMap(o.doc, "stringData") {
		if _, ok := v.(string); !ok {
			t.Errorf("stringData.%s is not a string", k)
		}
	}
	keys := objectKeys(o)
	required := map[string][]string{
		"kubernetes.io/tls":        {"tls.crt", "tls.key"},
		"kubernetes.io/basic-auth": {},
	}[typ]
	for _, k := range required {
		if !keys[k] {
			t.Errorf("type %s requires the key %s", typ, k)
		}
	}
}

func checkConfigMap(t *testing.T, o k8sObject) {
	for k, v := range getMap(o.doc, "data") {
		if _, ok := v.(string); !ok {
			t.Errorf("data.%s is not a string (quote it)", k)
		}
	}
	if data, ok := getMap(o.doc, "data")["config.yaml"].(string); ok {
		parseConfig(t, o.id()+" config.yaml", []byte(data))
	}
}

// TestKustomizeRenders runs `kubectl kustomize` where kubectl is installed.
func TestKustomizeRenders(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", k8sDir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.Bytes())
	}
	var rendered []string
	for _, doc := range decodeAllBytes(t, "kubectl kustomize", out) {
		rendered = append(rendered, k8sObject{doc: doc}.id())
	}
	var want []string
	for _, o := range loadCluster(t).objects {
		want = append(want, o.id())
	}
	sort.Strings(rendered)
	sort.Strings(want)
	if !slices.Equal(rendered, want) {
		t.Errorf("kubectl kustomize renders %v, the manifests hold %v", rendered, want)
	}
}

// ---------------------------------------------------------------------------
// docker compose

// composeMount is one entry of a service's volumes:.
type composeMount struct{ source, target string }

func composeMounts(t *testing.T, svc map[string]any) []composeMount {
	t.Helper()
	var out []composeMount
	for _, v := range getList(svc, "volumes") {
		switch m := v.(type) {
		case string:
			parts := strings.Split(m, ":")
			if len(parts) < 2 {
				t.Errorf("volume %q: want SOURCE:TARGET[:MODE]", m)
				continue
			}
			out = append(out, composeMount{parts[0], parts[1]})
		case map[string]any:
			out = append(out, composeMount{getString(m, "source"), getString(m, "target")})
		}
	}
	return out
}

// composePorts maps host ports to container ports.
func composePorts(t *testing.T, svc map[string]any) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, p := range getList(svc, "ports") {
		var host, ctr string
		switch m := p.(type) {
		case string:
			spec, _, _ := strings.Cut(m, "/")
			parts := strings.Split(spec, ":")
			if len(parts) < 2 {
				t.Errorf("port %q: publish it as [IP:]HOST:CONTAINER", m)
				continue
			}
			host, ctr = parts[len(parts)-2], parts[len(parts)-1]
		case map[string]any:
			host, ctr = fmt.Sprint(get(m, "published")), fmt.Sprint(get(m, "target"))
		}
		h, err1 := strconv.Atoi(host)
		c, err2 := strconv.Atoi(ctr)
		if err1 != nil || err2 != nil {
			t.Errorf("port %v: not HOST:CONTAINER numbers", p)
			continue
		}
		out[h] = c
	}
	return out
}

// composeDuration parses a compose duration such as 40s or 1m30s.
func composeDuration(t *testing.T, key, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s %q: %v", key, s, err)
	}
	return d
}

func TestComposeFile(t *testing.T) {
	docs := decodeAll(t, "docker-compose.yml")
	if len(docs) != 1 {
		t.Fatalf("docker-compose.yml: %d documents, want 1", len(docs))
	}
	doc := docs[0]
	services := getMap(doc, "services")
	pb, dv := getMap(services, "popbridge"), getMap(services, "dovecot")
	if pb == nil || dv == nil {
		t.Fatalf("services popbridge and dovecot are required; have %v", services)
	}
	namedVolumes := getMap(doc, "volumes")

	// Build contexts and Dockerfiles exist (the Dockerfile path is relative
	// to the context).
	for name, svc := range map[string]map[string]any{"popbridge": pb, "dovecot": dv} {
		ctxDir := getString(svc, "build", "context")
		if ctxDir == "" {
			t.Errorf("%s: build.context is not set", name)
			continue
		}
		df := getString(svc, "build", "dockerfile")
		if df == "" {
			df = "Dockerfile"
		}
		if _, err := os.Stat(filepath.Join(ctxDir, df)); err != nil {
			t.Errorf("%s: build: %v", name, err)
		}
		for _, m := range composeMounts(t, svc) {
			if strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") {
				if _, err := os.Stat(m.source); err != nil {
					t.Errorf("%s: bind mount %s: %v", name, m.source, err)
				}
			} else if _, ok := namedVolumes[m.source]; !ok {
				t.Errorf("%s: volume %s is not declared under volumes:", name, m.source)
			}
		}
	}
	if df := getString(pb, "build", "dockerfile"); filepath.Join(getString(pb, "build", "context"), df) != filepath.Join("..", "deploy", "Dockerfile") {
		t.Errorf("popbridge is not built with deploy/Dockerfile (context %q, dockerfile %q)", getString(pb, "build", "context"), df)
	}

	// popbridge's config: mounted where the image reads it, and valid.
	var cfgSource string
	var volumeTargets []string
	for _, m := range composeMounts(t, pb) {
		if m.target == configPath {
			cfgSource = m.source
		}
		if _, named := namedVolumes[m.source]; named {
			volumeTargets = append(volumeTargets, m.target)
		}
	}
	if cfgSource == "" {
		t.Fatalf("popbridge: nothing is mounted at %s", configPath)
	}
	if filepath.Clean(cfgSource) != filepath.Join("compose", "popbridge.yaml") {
		t.Errorf("popbridge: config mounted from %s, want ./compose/popbridge.yaml", cfgSource)
	}
	if cmd := getList(pb, "command"); len(cmd) > 0 {
		if !slices.Equal(cmd, []any{"serve", "-config", configPath}) {
			t.Errorf("popbridge: command %v, want [serve -config %s]", cmd, configPath)
		}
	}
	data, err := os.ReadFile(cfgSource)
	if err != nil {
		t.Fatal(err)
	}
	cfg := parseConfig(t, cfgSource, data)

	// Published ports reach the listener and the metrics endpoint.
	ports := composePorts(t, pb)
	listenerPorts := map[int]bool{}
	for i, l := range cfg.Listeners {
		listenerPorts[portOf(t, fmt.Sprintf("listeners.%d.address", i), l.Address)] = true
	}
	if !listenerPorts[ports[1110]] {
		t.Errorf("host port 1110 maps to container port %d, which no listener uses (%v)", ports[1110], cfg.Listeners)
	}
	if cfg.Metrics.Address == "" {
		t.Error("metrics.address is not set")
	} else if mp := portOf(t, "metrics.address", cfg.Metrics.Address); ports[9110] != mp {
		t.Errorf("host port 9110 maps to container port %d, metrics.address is %s", ports[9110], cfg.Metrics.Address)
	}
	for i, l := range cfg.Listeners {
		if host, _, _ := net.SplitHostPort(l.Address); host == "127.0.0.1" || host == "::1" || host == "localhost" {
			t.Errorf("listeners.%d.address %s: loopback in a container is unreachable through published ports", i, l.Address)
		}
	}

	// The upstream is the dovecot service, on the port its config listens on,
	// without TLS exactly when Dovecot has none.
	host, portStr, _ := net.SplitHostPort(cfg.Upstream.Address)
	if _, ok := services[host]; !ok || host != "dovecot" {
		t.Errorf("upstream.address %s: want the dovecot service", cfg.Upstream.Address)
	}
	dovecotConf, err := os.ReadFile(filepath.Join("compose", "dovecot", "dovecot.conf"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`inet_listener imap \{\s*port = (\d+)`).FindSubmatch(dovecotConf)
	if m == nil {
		t.Fatal("dovecot.conf: no inet_listener imap port")
	}
	if string(m[1]) != portStr {
		t.Errorf("upstream.address port %s, Dovecot listens on %s", portStr, m[1])
	}
	noSSL := regexp.MustCompile(`(?m)^ssl = no$`).Match(dovecotConf)
	if noSSL != (cfg.Upstream.TLS == "none") {
		t.Errorf("upstream.tls %s does not match Dovecot's ssl setting (ssl = no: %v)", cfg.Upstream.TLS, noSSL)
	}
	if noSSL && !regexp.MustCompile(`(?m)^disable_plaintext_auth = no$`).Match(dovecotConf) {
		t.Error("dovecot.conf: without TLS, popbridge's LOGIN needs disable_plaintext_auth = no")
	}

	// State on a named volume; time to finish sessions on stop.
	onVolume := false
	for _, target := range volumeTargets {
		onVolume = onVolume || under(cfg.State.Path, target)
	}
	if cfg.State.Driver == "bolt" && !onVolume {
		t.Errorf("state.path %s is not on a named volume (%v)", cfg.State.Path, volumeTargets)
	}
	if g := composeDuration(t, "stop_grace_period", getString(pb, "stop_grace_period")); g <= cfg.ShutdownGrace {
		t.Errorf("stop_grace_period %s is not above shutdown_grace %s", g, cfg.ShutdownGrace)
	}
	if get(pb, "depends_on", "dovecot") == nil && !slices.Contains(getList(pb, "depends_on"), any("dovecot")) {
		t.Error("popbridge does not depend on dovecot")
	}
}

func TestComposeSampleUsers(t *testing.T) {
	dir := filepath.Join("compose", "dovecot")
	users, err := os.ReadFile(filepath.Join(dir, "users"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(users), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) < 2 || fields[0] == "" || !strings.HasPrefix(fields[1], "{PLAIN}") || len(fields[1]) == len("{PLAIN}") {
			t.Errorf("users: %q is not user:{PLAIN}password", line)
			continue
		}
		names = append(names, fields[0])
	}
	if len(names) < 2 {
		t.Errorf("users: %d sample users, want 2", len(names))
	}

	// The image seeds exactly these users.
	dockerfile, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`for user in ([a-z0-9 _-]+);`).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("compose/dovecot/Dockerfile: no `for user in …;` seeding loop")
	}
	if seeded := strings.Fields(string(m[1])); !slices.Equal(seeded, names) {
		t.Errorf("the Dockerfile seeds %v, users holds %v", seeded, names)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "dovecot.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(dockerfile, []byte("COPY users /etc/dovecot/users")) || !bytes.Contains(conf, []byte(" /etc/dovecot/users")) {
		t.Error("the passwd-file is not copied to /etc/dovecot/users or dovecot.conf does not read it there")
	}

	for _, u := range names {
		msgs, err := filepath.Glob(filepath.Join(dir, "seed", u, "*.eml"))
		if err != nil || len(msgs) == 0 {
			t.Errorf("user %s has no seed messages in seed/%s/*.eml", u, u)
		}
		for _, f := range msgs {
			checkSeedMessage(t, f)
		}
	}
}

// checkSeedMessage checks a sample message is a plausible RFC 5322 message
// in maildir form (LF line ends).
func checkSeedMessage(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("\r")) {
		t.Errorf("%s: CR in a maildir file (Dovecot adds CRLF itself)", file)
	}
	header, body, ok := strings.Cut(string(data), "\n\n")
	if !ok || body == "" {
		t.Errorf("%s: no blank line between header and body", file)
	}
	for _, h := range []string{"From:", "Message-ID:", "Date:", "Subject:"} {
		if !strings.Contains(header, "\n"+h) && !strings.HasPrefix(header, h) {
			t.Errorf("%s: no %s header", file, h)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		if len(sc.Text()) > 998 {
			t.Errorf("%s:%d: longer than RFC 5322's 998 characters", file, n)
		}
	}
}

// TestComposeConfig runs `docker compose config` on both compose files where
// the plugin is installed (it needs no daemon).
func TestComposeConfig(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := exec.CommandContext(ctx, docker, "compose", "version").Run(); err != nil {
		t.Skip("docker compose plugin not installed")
	}
	for _, file := range []string{"docker-compose.yml", scaleComposeFile} {
		out, err := exec.CommandContext(ctx, docker, "compose", "-f", file, "config", "-q").CombinedOutput()
		if err != nil {
			t.Errorf("docker compose -f %s config: %v\n%s", file, err, out)
		}
	}
}

// ---------------------------------------------------------------------------
// Dockerfile

// dockerInstructions returns the Dockerfile's instructions with continuation
// lines joined and comments dropped.
func dockerInstructions(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := dockerInstructions(t, "Dockerfile")
	var stages [][]string
	for _, in := range ins {
		if strings.HasPrefix(in, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if !strings.HasPrefix(in, "ARG ") {
				t.Errorf("instruction before FROM: %s", in)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a final stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The build image's Go is go.mod's.
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	gm := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if gm == nil {
		t.Fatal("go.mod: no go directive")
	}
	fm := regexp.MustCompile(`golang:(\d+\.\d+)[-.\w]*`).FindStringSubmatch(build[0])
	if fm == nil {
		t.Fatalf("build stage %q: not an official golang image", build[0])
	}
	if fm[1] != string(gm[1]) {
		t.Errorf("build stage uses Go %s, go.mod says go %s", fm[1], gm[1])
	}
	buildText := strings.Join(build, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=$VERSION"`, "./cmd/popbridge", "ARG VERSION"} {
		if !strings.Contains(buildText, want) {
			t.Errorf("build stage lacks %s", want)
		}
	}

	// What the Dockerfile relies on in the code.
	mainGo, err := os.ReadFile(filepath.Join("..", "cmd", "popbridge", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var version = `).Match(mainGo) {
		t.Error("cmd/popbridge/main.go has no `var version = …` for -X main.version")
	}
	if !bytes.Contains(mainGo, []byte(`defaultConfigPath = "`+configPath+`"`)) {
		t.Errorf("cmd/popbridge/main.go: the default config path is no longer %s, which every deployment here uses", configPath)
	}

	// The final stage: distroless, numeric non-root user, ports, volume,
	// entrypoint.
	if !strings.HasPrefix(final[0], "FROM gcr.io/distroless/static-debian12:nonroot") && !strings.HasPrefix(final[0], "FROM scratch") {
		t.Errorf("final stage %q: want gcr.io/distroless/static-debian12:nonroot", final[0])
	}
	instr := func(name string) []string {
		var out []string
		for _, in := range final {
			if strings.HasPrefix(in, name+" ") {
				out = append(out, strings.TrimSpace(strings.TrimPrefix(in, name)))
			}
		}
		return out
	}
	users := instr("USER")
	if len(users) == 0 {
		t.Error("final stage sets no USER")
	} else {
		u := users[len(users)-1]
		uid, _, _ := strings.Cut(u, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("USER %s: want a numeric non-root uid (Kubernetes' runAsNonRoot checks it)", u)
		}
	}
	exposed := strings.Fields(strings.Join(instr("EXPOSE"), " "))
	for _, p := range []string{"110", "995", "9110"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("EXPOSE lacks %s (have %v)", p, exposed)
		}
	}
	if v := strings.Join(instr("VOLUME"), " "); !strings.Contains(v, `"/var/lib/popbridge"`) {
		t.Errorf("VOLUME %s: want /var/lib/popbridge", v)
	}
	jsonArray := func(name string) []string {
		list := instr(name)
		if len(list) != 1 {
			t.Fatalf("final stage: %d %s instructions, want 1", len(list), name)
		}
		var a []string
		if err := json.Unmarshal([]byte(list[0]), &a); err != nil {
			t.Fatalf("%s %s: not exec form: %v", name, list[0], err)
		}
		return a
	}
	if ep := jsonArray("ENTRYPOINT"); !slices.Equal(ep, []string{"/usr/local/bin/popbridge"}) {
		t.Errorf("ENTRYPOINT %v", ep)
	}
	if cmd := jsonArray("CMD"); !slices.Equal(cmd, []string{"serve", "-config", configPath}) {
		t.Errorf("CMD %v, want [serve -config %s]", cmd, configPath)
	}

	// The build context's ignore file keeps what the build needs.
	ignore, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, pattern := range strings.Split(string(ignore), "\n") {
		pattern = strings.TrimSpace(pattern)
		if pattern == "" || strings.HasPrefix(pattern, "#") || strings.HasPrefix(pattern, "!") {
			continue
		}
		p := strings.TrimPrefix(strings.TrimPrefix(pattern, "**/"), "/")
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "cmd/popbridge", "cmd/popbridge/main.go", "main.go", "pop3", "proxy", "uidmap", "imapupstream"} {
			if ok, _ := path.Match(p, needed); ok {
				t.Errorf("Dockerfile.dockerignore: %q excludes %s, which the build needs", pattern, needed)
			}
		}
	}
}

// TestDockerBuild builds the image and runs it, where a Docker daemon answers.
func TestDockerBuild(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no Docker daemon (docker is not installed)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	infoCtx, infoCancel := context.WithTimeout(ctx, 20*time.Second)
	defer infoCancel()
	if out, err := exec.CommandContext(infoCtx, docker, "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker daemon: docker info: %v: %s", err, lastLine(out))
	}
	if testing.Short() {
		t.Skip("docker build skipped in -short mode")
	}
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.CommandContext(ctx, docker, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	image := fmt.Sprintf("popbridge-deploy-test:%d", time.Now().UnixNano())
	run("build", "-f", "Dockerfile", "--build-arg", "VERSION=deploy-test", "-t", image, "..")
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", image).Run() })

	if out := run("run", "--rm", image, "version"); !bytes.Contains(out, []byte("popbridge deploy-test")) {
		t.Errorf("popbridge version in the image: %s", out)
	}
	// The non-root user reads a mounted config, with the compose demo's file.
	cfg, err := filepath.Abs(filepath.Join("compose", "popbridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out := run("run", "--rm", "--read-only", "--cap-drop", "ALL", "-v", cfg+":"+configPath+":ro",
		image, "check-config", "-config", configPath); !bytes.Contains(out, []byte(": OK")) {
		t.Errorf("check-config in the image: %s", out)
	}
	if out := run("image", "inspect", "-f", "{{.Config.User}}", image); strings.TrimSpace(string(out)) != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532", strings.TrimSpace(string(out)))
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	return s[strings.LastIndex(s, "\n")+1:]
}

// ---------------------------------------------------------------------------
// systemd

const unitFile = "systemd/popbridge.service"

// parseUnit returns section → key → values (a key may repeat).
func parseUnit(t *testing.T, data []byte) map[string]map[string][]string {
	t.Helper()
	units := map[string]map[string][]string{}
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			units[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not KEY=VALUE in a section", unitFile, n+1, line)
			}
			units[section][strings.TrimSpace(k)] = append(units[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return units
}

func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := parseUnit(t, data)
	svc := unit["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	want := map[string]string{
		"ExecStartPre":            "/usr/local/bin/popbridge check-config -config " + configPath,
		"ExecStart":               "/usr/local/bin/popbridge serve -config " + configPath,
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"KillSignal":              "SIGTERM",
		"DynamicUser":             "yes",
		"StateDirectory":          "popbridge",
		"ConfigurationDirectory":  "popbridge",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"RestrictNamespaces":      "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"UMask":                   "0077",
		"SystemCallFilter":        "@system-service",
		"TimeoutStopSec":          "", // checked below
		"StateDirectoryMode":      "0700",
		"LimitNOFILE":             "", // checked below
		"ProtectProc":             "invisible",
		"RestrictSUIDSGID":        "yes",
		"RestrictRealtime":        "yes",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"PrivateMounts":           "yes",
		"SystemCallErrorNumber":   "EPERM",
		"RemoveIPC":               "yes",
		"KillMode":                "mixed",
		"Type":                    "exec",
		"RestartSec":              "",
	}
	for key, value := range want {
		got, ok := svc[key]
		if !ok {
			t.Errorf("[Service] lacks %s=", key)
			continue
		}
		if value != "" && !slices.Contains(got, value) {
			t.Errorf("[Service] %s=%v, want %s", key, got, value)
		}
	}

	stop := svc["TimeoutStopSec"]
	if len(stop) == 1 {
		s := stop[0]
		if _, err := strconv.Atoi(s); err == nil {
			s += "s" // bare seconds
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Errorf("TimeoutStopSec=%s: %v", stop[0], err)
		} else if grace := defaultConfig(t).ShutdownGrace; d <= grace {
			t.Errorf("TimeoutStopSec=%s is not above the default shutdown_grace %s", stop[0], grace)
		}
	}
	if l := svc["LimitNOFILE"]; len(l) == 1 {
		if n, err := strconv.Atoi(l[0]); err != nil || n < 2*defaultConfig(t).Limits.MaxConnections {
			t.Errorf("LimitNOFILE=%s: each session takes two descriptors, limits.max_connections is %d", l[0], defaultConfig(t).Limits.MaxConnections)
		}
	}
	if got := unit["Install"]["WantedBy"]; !slices.Contains(got, "multi-user.target") {
		t.Errorf("[Install] WantedBy=%v, want multi-user.target", got)
	}

	t.Run("systemd-analyze", func(t *testing.T) { systemdAnalyze(t, data) })
}

// systemdAnalyze runs `systemd-analyze verify` and `security --offline` where
// systemd-analyze is installed, on a copy of the unit whose popbridge path
// points at an existing executable (verify insists on one).
func systemdAnalyze(t *testing.T, data []byte) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "popbridge.service")
	if err := os.WriteFile(copyPath, bytes.ReplaceAll(data, []byte("/usr/local/bin/popbridge"), []byte(exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out, err := exec.CommandContext(ctx, sa, "verify", copyPath).CombinedOutput()
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "popbridge.service") {
			ours = append(ours, line)
		}
	}
	if len(ours) > 0 {
		t.Errorf("systemd-analyze verify:\n%s", strings.Join(ours, "\n"))
	} else if err != nil {
		t.Logf("systemd-analyze verify failed, but not about popbridge.service (this machine's own units?): %v\n%s", err, out)
	}

	out, err = exec.CommandContext(ctx, sa, "security", "--offline=true", copyPath).CombinedOutput()
	if err != nil {
		t.Skipf("systemd-analyze security --offline not usable here: %v: %s", err, firstLine(out))
	}
	m := regexp.MustCompile(`Overall exposure level for popbridge\.service: ([0-9.]+) (\w+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no overall exposure level in\n%s", out)
	}
	t.Logf("systemd-analyze security: exposure %s %s", m[1], m[2])
	if level := string(m[2]); level != "SAFE" && level != "OK" {
		t.Errorf("systemd-analyze security rates the unit %s %s, want SAFE or OK", m[1], level)
	}
}
