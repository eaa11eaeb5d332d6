package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
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

// The scale-out setup (deploy/README.md, "Several instances"): two
// popbridge instances behind HAProxy, which sends PROXY protocol v2
// headers, with their state in PostgreSQL.

const (
	scaleComposeFile = "docker-compose.scale.yml"
	scaleConfigFile  = "compose/popbridge-scale.yaml"
	haproxyCfgFile   = "compose/haproxy.cfg"
	// Where the official haproxy image reads its config.
	haproxyCfgTarget = "/usr/local/etc/haproxy/haproxy.cfg"
	// RFC 1939 §3: an idle session may be closed after 10 minutes, no sooner.
	pop3MinIdle = 10 * time.Minute
)

// publishedPort is one entry of a compose service's ports:.
type publishedPort struct {
	spec      string
	ip        string // "" when the port is published on every address
	host, ctr int
}

func composePublished(t *testing.T, svc map[string]any) []publishedPort {
	t.Helper()
	var out []publishedPort
	for _, p := range getList(svc, "ports") {
		pp := publishedPort{spec: fmt.Sprint(p)}
		var host, ctr string
		switch m := p.(type) {
		case string:
			spec, _, _ := strings.Cut(m, "/")
			parts := strings.Split(spec, ":")
			switch len(parts) {
			case 3:
				pp.ip, host, ctr = parts[0], parts[1], parts[2]
			case 2:
				host, ctr = parts[0], parts[1]
			default:
				t.Errorf("port %q: publish it as IP:HOST:CONTAINER", m)
				continue
			}
		case map[string]any:
			pp.ip = getString(m, "host_ip")
			host, ctr = fmt.Sprint(get(m, "published")), fmt.Sprint(get(m, "target"))
		default:
			t.Errorf("port %v: neither a string nor a mapping", p)
			continue
		}
		var err1, err2 error
		pp.host, err1 = strconv.Atoi(host)
		pp.ctr, err2 = strconv.Atoi(ctr)
		if err1 != nil || err2 != nil {
			t.Errorf("port %v: not HOST:CONTAINER numbers", p)
			continue
		}
		out = append(out, pp)
	}
	return out
}

// dependsOn lists the services a compose service depends on, with the
// condition each must meet ("service_started" for the short form).
func dependsOn(svc map[string]any) map[string]string {
	out := map[string]string{}
	switch d := get(svc, "depends_on").(type) {
	case []any:
		for _, name := range d {
			out[fmt.Sprint(name)] = "service_started"
		}
	case map[string]any:
		for name, v := range d {
			cond := getString(v, "condition")
			if cond == "" {
				cond = "service_started"
			}
			out[name] = cond
		}
	}
	return out
}

// scaleSetup is docker-compose.scale.yml read and checked enough to find
// its parts.
type scaleSetup struct {
	doc       map[string]any
	services  map[string]any
	popbridge []string // the popbridge services, sorted
	subnet    *net.IPNet
}

func loadScale(t *testing.T) *scaleSetup {
	t.Helper()
	docs := decodeAll(t, scaleComposeFile)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", scaleComposeFile, len(docs))
	}
	s := &scaleSetup{doc: docs[0], services: getMap(docs[0], "services")}
	for name, svc := range s.services {
		df := filepath.Join(getString(svc, "build", "context"), getString(svc, "build", "dockerfile"))
		if strings.HasPrefix(name, "popbridge") || df == filepath.Join("..", "deploy", "Dockerfile") {
			s.popbridge = append(s.popbridge, name)
		}
	}
	sort.Strings(s.popbridge)
	if len(s.popbridge) < 2 {
		t.Fatalf("%s: popbridge services %v, want at least 2", scaleComposeFile, s.popbridge)
	}
	for _, name := range []string{"haproxy", "postgres", "dovecot"} {
		if getMap(s.services, name) == nil {
			t.Fatalf("%s: no service %s (have %v)", scaleComposeFile, name, s.services)
		}
	}
	cfgs := getList(s.doc, "networks", "default", "ipam", "config")
	if len(cfgs) != 1 {
		t.Fatalf("%s: networks.default.ipam.config: want one entry with a fixed subnet, have %v", scaleComposeFile, cfgs)
	}
	_, subnet, err := net.ParseCIDR(getString(cfgs[0], "subnet"))
	if err != nil {
		t.Fatalf("%s: networks.default subnet: %v", scaleComposeFile, err)
	}
	s.subnet = subnet
	return s
}

func (s *scaleSetup) service(name string) map[string]any { return getMap(s.services, name) }

// environment returns a service's environment (mapping or KEY=VALUE list).
func environment(svc map[string]any) map[string]string {
	out := map[string]string{}
	switch e := get(svc, "environment").(type) {
	case map[string]any:
		for k, v := range e {
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = v
		}
	}
	return out
}

func TestScaleComposeFile(t *testing.T) {
	s := loadScale(t)
	namedVolumes := getMap(s.doc, "volumes")

	// Every service named exists; builds, bind mounts and volumes exist;
	// everything is on the default network, whose subnet is fixed.
	for name, v := range s.services {
		svc := v.(map[string]any)
		for dep := range dependsOn(svc) {
			if getMap(s.services, dep) == nil {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
		if ctxDir := getString(svc, "build", "context"); ctxDir != "" {
			df := getString(svc, "build", "dockerfile")
			if df == "" {
				df = "Dockerfile"
			}
			if _, err := os.Stat(filepath.Join(ctxDir, df)); err != nil {
				t.Errorf("%s: build: %v", name, err)
			}
		} else if getString(svc, "image") == "" {
			t.Errorf("%s: neither build nor image", name)
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
		if nets := get(svc, "networks"); nets != nil {
			t.Errorf("%s: networks %v: keep every service on the default network, the one limits.trusted_proxies trusts", name, nets)
		}
		if get(svc, "network_mode") != nil {
			t.Errorf("%s: network_mode is set: keep every service on the default network", name)
		}
	}

	// Published ports: on 127.0.0.1 only, no host port twice.
	hostPorts := map[int]string{}
	for name, v := range s.services {
		for _, p := range composePublished(t, v.(map[string]any)) {
			if p.ip != "127.0.0.1" {
				t.Errorf("%s: port %s is published on %q, want 127.0.0.1 only", name, p.spec, p.ip)
			}
			if other, dup := hostPorts[p.host]; dup {
				t.Errorf("host port %d is published by %s and %s", p.host, other, name)
			}
			hostPorts[p.host] = name
		}
	}

	// The popbridge instances: built like the demo's, the scale config
	// mounted where the image reads it, on PostgreSQL and Dovecot.
	data, err := os.ReadFile(scaleConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	var fileCfg effectiveConfig
	if err := yaml.Unmarshal(data, &fileCfg); err != nil {
		t.Fatalf("%s: %v", scaleConfigFile, err)
	}
	pg := s.service("postgres")
	pgEnv := environment(pg)
	for _, name := range s.popbridge {
		pb := s.service(name)
		if df := getString(pb, "build", "dockerfile"); filepath.Join(getString(pb, "build", "context"), df) != filepath.Join("..", "deploy", "Dockerfile") {
			t.Errorf("%s is not built with deploy/Dockerfile (context %q, dockerfile %q)", name, getString(pb, "build", "context"), df)
		}
		var cfgSource string
		for _, m := range composeMounts(t, pb) {
			if m.target == configPath {
				cfgSource = m.source
			}
		}
		if filepath.Clean(cfgSource) != filepath.Clean(scaleConfigFile) {
			t.Errorf("%s: %s mounted from %q, want ./%s", name, configPath, cfgSource, scaleConfigFile)
		}
		if cmd := getList(pb, "command"); len(cmd) > 0 && !slices.Equal(cmd, []any{"serve", "-config", configPath}) {
			t.Errorf("%s: command %v, want [serve -config %s]", name, cmd, configPath)
		}
		if g := composeDuration(t, name+": stop_grace_period", getString(pb, "stop_grace_period")); g <= 30*time.Second {
			t.Errorf("%s: stop_grace_period %s is not above the default shutdown_grace 30s", name, g)
		}
		deps := dependsOn(pb)
		for _, dep := range []string{"postgres", "dovecot"} {
			if deps[dep] != "service_healthy" {
				t.Errorf("%s: depends_on %s: condition %q, want service_healthy", name, dep, deps[dep])
			}
		}
		// Each instance's metrics, reachable one by one.
		if fileCfg.Metrics.Address == "" {
			t.Errorf("%s: metrics.address is not set", scaleConfigFile)
		} else {
			mp := portOf(t, "metrics.address", fileCfg.Metrics.Address)
			published := false
			for _, p := range composePublished(t, pb) {
				published = published || p.ctr == mp
			}
			if !published {
				t.Errorf("%s does not publish its metrics port %d", name, mp)
			}
		}

		// The DSN with the password comes from the environment and names
		// the postgres service with its user, password and database.
		dsn := environment(pb)["POPBRIDGE_STATE_DSN"]
		u, err := url.Parse(dsn)
		if dsn == "" || err != nil {
			t.Errorf("%s: POPBRIDGE_STATE_DSN %q: want a postgres:// URL (%v)", name, dsn, err)
			continue
		}
		pw, _ := u.User.Password()
		if (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Hostname() != "postgres" || u.Port() != "5432" ||
			u.User.Username() != pgEnv["POSTGRES_USER"] || pw == "" || pw != pgEnv["POSTGRES_PASSWORD"] ||
			strings.TrimPrefix(u.Path, "/") != pgEnv["POSTGRES_DB"] {
			t.Errorf("%s: POPBRIDGE_STATE_DSN %s does not reach the postgres service as %s with its POSTGRES_PASSWORD to database %s",
				name, u.Redacted(), pgEnv["POSTGRES_USER"], pgEnv["POSTGRES_DB"])
		}
	}

	// PostgreSQL: the official image at a fixed major version, a
	// healthcheck for depends_on, the data on a named volume.
	if img := getString(pg, "image"); !regexp.MustCompile(`^postgres:\d+(-[a-z0-9]+)?$`).MatchString(img) {
		t.Errorf("postgres: image %q, want postgres:MAJOR[-variant]", img)
	}
	if test := fmt.Sprint(getList(pg, "healthcheck", "test")); !strings.Contains(test, "pg_isready") {
		t.Errorf("postgres: healthcheck %s does not run pg_isready", test)
	}
	dataOnVolume := false
	for _, m := range composeMounts(t, pg) {
		_, named := namedVolumes[m.source]
		dataOnVolume = dataOnVolume || (named && m.target == "/var/lib/postgresql/data")
	}
	if !dataOnVolume {
		t.Error("postgres: /var/lib/postgresql/data is not on a named volume")
	}
	if pgEnv["POSTGRES_USER"] == "" || pgEnv["POSTGRES_DB"] == "" || pgEnv["POSTGRES_PASSWORD"] == "" {
		t.Errorf("postgres: POSTGRES_USER, POSTGRES_DB and POSTGRES_PASSWORD must be set (have %v)", pgEnv)
	}

	// HAProxy: the official image at a fixed version, the committed config.
	hp := s.service("haproxy")
	if img := getString(hp, "image"); !regexp.MustCompile(`^haproxy:\d+\.\d+(-[a-z0-9]+)?$`).MatchString(img) {
		t.Errorf("haproxy: image %q, want haproxy:MAJOR.MINOR[-variant]", img)
	}
	mounted := false
	for _, m := range composeMounts(t, hp) {
		mounted = mounted || (m.target == haproxyCfgTarget && filepath.Clean(m.source) == filepath.Clean(haproxyCfgFile))
	}
	if !mounted {
		t.Errorf("haproxy: ./%s is not mounted at %s", haproxyCfgFile, haproxyCfgTarget)
	}
	for _, name := range s.popbridge {
		if _, ok := dependsOn(hp)[name]; !ok {
			t.Errorf("haproxy does not depend on %s", name)
		}
	}

	// Dovecot: the demo's.
	demo := decodeAll(t, "docker-compose.yml")[0]
	if got, want := get(s.service("dovecot"), "build"), get(demo, "services", "dovecot", "build"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dovecot: build %v, the demo's is %v", got, want)
	}
	if getMap(s.service("dovecot"), "healthcheck") == nil {
		t.Error("dovecot: no healthcheck (the popbridge services wait for it)")
	}
}

func TestScaleConfig(t *testing.T) {
	s := loadScale(t)
	data, err := os.ReadFile(scaleConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	// First what the file says, then (below) what popbridge makes of it.
	var raw effectiveConfig
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatalf("%s: %v", scaleConfigFile, err)
	}
	if raw.State.Driver != "postgres" {
		t.Errorf("state.driver %q, want postgres (shared by the instances)", raw.State.Driver)
	}
	if raw.State.DSN != "" {
		u, err := url.Parse(raw.State.DSN)
		if err != nil {
			t.Errorf("state.dsn: %v", err)
		} else if _, set := u.User.Password(); set || u.Query().Has("password") {
			t.Error("state.dsn holds a password: pass it in POPBRIDGE_STATE_DSN from the compose file")
		} else if getMap(s.services, u.Hostname()) == nil {
			t.Errorf("state.dsn names host %q, not a compose service", u.Hostname())
		}
	}
	checkProxyTrust(t, s, raw.Listeners, raw.Limits.TrustedProxies)

	// popbridge's own validation, and the same checks on its effective
	// config.
	cfg := parseConfig(t, scaleConfigFile, data)
	if cfg.State.Driver != "postgres" {
		t.Errorf("effective state.driver %q, want postgres", cfg.State.Driver)
	}
	checkProxyTrust(t, s, cfg.Listeners, cfg.Limits.TrustedProxies)
	if host, _, _ := net.SplitHostPort(cfg.Upstream.Address); host != "dovecot" {
		t.Errorf("upstream.address %s: want the dovecot service", cfg.Upstream.Address)
	}
}

// checkProxyTrust checks that every listener takes PROXY headers and that
// limits.trusted_proxies trusts HAProxy's network and nothing beyond it.
func checkProxyTrust(t *testing.T, s *scaleSetup, listeners []configListener, trusted []string) {
	t.Helper()
	if len(listeners) == 0 {
		t.Error("no listeners")
	}
	for i, l := range listeners {
		if !l.ProxyProtocol {
			t.Errorf("listeners.%d (%s): proxy_protocol is not set; behind HAProxy every client would look like HAProxy", i, l.Address)
		}
	}
	if len(trusted) == 0 {
		t.Fatal("limits.trusted_proxies is empty")
	}
	subnetOnes, _ := s.subnet.Mask.Size()
	covered := false
	for i, p := range trusted {
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			ip := net.ParseIP(p)
			if ip == nil {
				t.Errorf("limits.trusted_proxies.%d %q: neither an address nor a CIDR", i, p)
				continue
			}
			n = &net.IPNet{IP: ip, Mask: net.CIDRMask(len(ip)*8, len(ip)*8)}
			if ip4 := ip.To4(); ip4 != nil {
				n = &net.IPNet{IP: ip4, Mask: net.CIDRMask(32, 32)}
			}
		}
		ones, bits := n.Mask.Size()
		_, subnetBits := s.subnet.Mask.Size()
		if bits != subnetBits || ones < subnetOnes || !s.subnet.Contains(n.IP) {
			t.Errorf("limits.trusted_proxies.%d %s reaches beyond the compose network %s", i, p, s.subnet)
		}
		covered = covered || (ones == subnetOnes && n.IP.Equal(s.subnet.IP))
	}
	// HAProxy has no fixed address, so the whole network must be trusted.
	if !covered {
		t.Errorf("limits.trusted_proxies %v does not cover the compose network %s, where HAProxy gets its address", trusted, s.subnet)
	}
}

// ---------------------------------------------------------------------------
// HAProxy's config

// haSection is one section of an HAProxy config: its keyword ("frontend"),
// name, and lines split into words, comments dropped.
type haSection struct {
	kind, name string
	lines      [][]string
}

var haSectionKinds = []string{"global", "defaults", "frontend", "backend", "listen", "resolvers",
	"peers", "userlist", "mailers", "program", "http-errors", "ring", "cache"}

func parseHAProxy(t *testing.T, data []byte) []*haSection {
	t.Helper()
	var secs []*haSection
	for n, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		if slices.Contains(haSectionKinds, words[0]) {
			sec := &haSection{kind: words[0]}
			if len(words) > 1 {
				sec.name = words[1]
			}
			secs = append(secs, sec)
			continue
		}
		if len(secs) == 0 {
			t.Fatalf("%s:%d: %q outside any section", haproxyCfgFile, n+1, line)
		}
		cur := secs[len(secs)-1]
		cur.lines = append(cur.lines, words)
	}
	return secs
}

// find returns the arguments of the section's lines that start with words.
func (s *haSection) find(words ...string) [][]string {
	var out [][]string
	for _, l := range s.lines {
		if len(l) >= len(words) && slices.Equal(l[:len(words)], words) {
			out = append(out, l[len(words):])
		}
	}
	return out
}

// haSetting is a proxy section's setting: its own last, else that of the
// defaults section in force (the last one above it).
func haSetting(secs []*haSection, sec *haSection, words ...string) []string {
	if v := sec.find(words...); len(v) > 0 {
		return v[len(v)-1]
	}
	var defaults *haSection
	for _, s := range secs {
		if s == sec {
			break
		}
		if s.kind == "defaults" {
			defaults = s
		}
	}
	if defaults != nil {
		if v := defaults.find(words...); len(v) > 0 {
			return v[len(v)-1]
		}
	}
	return nil
}

// haDuration parses an HAProxy time: a number with an optional unit (us,
// ms, s, m, h, d); milliseconds without one.
func haDuration(s string) (time.Duration, error) {
	m := regexp.MustCompile(`^(\d+)(us|ms|s|m|h|d)?$`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not an HAProxy time", s)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
	return time.Duration(n) * unit, nil
}

// haServer is a server line with the default-server options in force.
type haServer struct {
	backend, name, addr string
	opts                []string
}

func haServers(secs []*haSection, sec *haSection) []haServer {
	defaults := haSetting(secs, sec, "default-server")
	var out []haServer
	for _, l := range sec.find("server") {
		if len(l) < 2 {
			continue
		}
		out = append(out, haServer{sec.name, l[0], l[1], append(slices.Clone(defaults), l[2:]...)})
	}
	return out
}

// haPort is the port of a bind or server address (":110", "host:110").
func haPort(t *testing.T, addr string) int {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	n, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("%s: address %q has no port", haproxyCfgFile, addr)
	}
	return n
}

func TestScaleHAProxyConfig(t *testing.T) {
	s := loadScale(t)
	data, err := os.ReadFile(haproxyCfgFile)
	if err != nil {
		t.Fatal(err)
	}
	secs := parseHAProxy(t, data)
	cfgData, err := os.ReadFile(scaleConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	var pbCfg effectiveConfig
	if err := yaml.Unmarshal(cfgData, &pbCfg); err != nil {
		t.Fatal(err)
	}
	var proxyPorts []int // popbridge's PROXY listeners
	for i, l := range pbCfg.Listeners {
		if l.ProxyProtocol {
			proxyPorts = append(proxyPorts, portOf(t, fmt.Sprintf("listeners.%d.address", i), l.Address))
		}
	}
	idle := pbCfg.Limits.IdleTimeout
	if idle == 0 {
		idle = pop3MinIdle // popbridge's default
	}

	published := map[int]bool{} // the haproxy service's container ports
	for _, p := range composePublished(t, s.service("haproxy")) {
		published[p.ctr] = true
	}
	backends := map[string]*haSection{}
	for _, sec := range secs {
		if sec.kind == "backend" || sec.kind == "listen" {
			backends[sec.name] = sec
		}
	}

	// POP3 frontends: TCP, published, long timeouts, to a backend here.
	var servers []haServer
	pop3Frontends := 0
	for _, sec := range secs {
		if sec.kind != "frontend" && sec.kind != "listen" {
			continue
		}
		for _, b := range sec.find("bind") {
			if !published[haPort(t, b[0])] {
				t.Errorf("%s %s: bind %s is not published by the haproxy service", sec.kind, sec.name, b[0])
			}
		}
		if mode := haSetting(secs, sec, "mode"); len(mode) == 0 || mode[0] != "tcp" {
			continue // the statistics page
		}
		pop3Frontends++
		for _, which := range []string{"client", "server"} {
			v := haSetting(secs, sec, "timeout", which)
			if sec.kind == "frontend" && which == "server" {
				if db := haSetting(secs, sec, "default_backend"); len(db) > 0 && backends[db[0]] != nil {
					v = haSetting(secs, backends[db[0]], "timeout", which)
				}
			}
			if len(v) == 0 {
				t.Errorf("%s %s: no timeout %s", sec.kind, sec.name, which)
				continue
			}
			d, err := haDuration(v[0])
			if err != nil {
				t.Errorf("timeout %s: %v", which, err)
			} else if d < pop3MinIdle || d < idle {
				t.Errorf("%s %s: timeout %s %s cuts idle POP3 sessions before RFC 1939's 10 minutes or popbridge's idle_timeout %s", sec.kind, sec.name, which, v[0], idle)
			}
		}
		if sec.kind == "frontend" {
			db := haSetting(secs, sec, "default_backend")
			if len(db) == 0 || backends[db[0]] == nil {
				t.Errorf("frontend %s: default_backend %v is not a backend here", sec.name, db)
				continue
			}
		}
	}
	if pop3Frontends == 0 {
		t.Fatalf("%s: no frontend in mode tcp", haproxyCfgFile)
	}

	// Backends: least connections, a POP3 health check, PROXY v2.
	for _, sec := range backends {
		srv := haServers(secs, sec)
		if len(srv) == 0 {
			continue
		}
		servers = append(servers, srv...)
		if mode := haSetting(secs, sec, "mode"); len(mode) == 0 || mode[0] != "tcp" {
			t.Errorf("backend %s: mode %v, want tcp", sec.name, mode)
		}
		if b := haSetting(secs, sec, "balance"); len(b) == 0 || b[0] != "leastconn" {
			t.Errorf("backend %s: balance %v, want leastconn (POP3 sessions are long-lived)", sec.name, b)
		}
		if len(sec.find("option", "tcp-check")) == 0 {
			t.Errorf("backend %s: no option tcp-check", sec.name)
		}
		expects := sec.find("tcp-check", "expect")
		if len(expects) == 0 || !slices.Equal(expects[0], []string{"string", "+OK"}) {
			t.Errorf("backend %s: the health check's first expect is %v, want the POP3 greeting: string +OK", sec.name, expects)
		}
	}
	var names []string
	for _, srv := range servers {
		host, port, _ := strings.Cut(srv.addr, ":")
		p, _ := strconv.Atoi(port)
		names = append(names, host)
		if !slices.Contains(s.popbridge, host) || !slices.Contains(proxyPorts, p) {
			t.Errorf("server %s %s: not a popbridge service on its proxy_protocol listener port %v", srv.name, srv.addr, proxyPorts)
		}
		for _, opt := range []string{"send-proxy-v2", "check", "check-send-proxy"} {
			if !slices.Contains(srv.opts, opt) {
				t.Errorf("server %s: no %s (options %v)", srv.name, opt, srv.opts)
			}
		}
		for _, opt := range []string{"send-proxy", "no-send-proxy-v2", "no-check-send-proxy", "no-check"} {
			if slices.Contains(srv.opts, opt) {
				t.Errorf("server %s: %s (options %v): popbridge needs a v2 header on every connection, checks included", srv.name, opt, srv.opts)
			}
		}
		// Servers must not keep HAProxy from starting while compose has not
		// yet started (or has stopped) an instance.
		initAddr := ""
		for i, o := range srv.opts {
			if o == "init-addr" && i+1 < len(srv.opts) {
				initAddr = srv.opts[i+1]
			}
		}
		if !slices.Contains(strings.Split(initAddr, ","), "none") {
			t.Errorf("server %s: init-addr %q lacks none: HAProxy would not start while %s does not resolve", srv.name, initAddr, host)
		}
	}
	sort.Strings(names)
	if !slices.Equal(names, s.popbridge) {
		t.Errorf("HAProxy's servers %v, the popbridge services %v: want each exactly once", names, s.popbridge)
	}
}

// haproxyBinary finds Debian's haproxy (in /usr/sbin, often not on a
// user's PATH): missing, it fails the test in CI (.ci/run installs it)
// and skips it elsewhere.
func haproxyBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("haproxy is not installed; .ci/run installs it (Debian package haproxy)")
	}
	t.Skip("haproxy is not installed (apt-get install haproxy)")
	return ""
}

// TestScaleHAProxyCheck runs HAProxy's own config check. Outside compose
// the service names do not resolve: init-addr none lets that pass with a
// warning, which is the only warning allowed.
func TestScaleHAProxyCheck(t *testing.T) {
	haproxy := haproxyBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, haproxy, "-c", "-f", haproxyCfgFile).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", haproxyCfgFile, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "[WARNING]") && !strings.Contains(line, "could not resolve address") {
			t.Errorf("haproxy -c: %s", line)
		}
	}
	t.Logf("haproxy -c: %s", firstLine(out))
}

// ---------------------------------------------------------------------------
// HAProxy in front of two PROXY-reading stand-ins for popbridge

// ppv2Signature starts every PROXY protocol version 2 header.
var ppv2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ppv2Header is what a version 2 header says.
type ppv2Header struct {
	command  byte // 0 LOCAL (the proxy's own connection), 1 PROXY
	family   byte // 0x11 TCP over IPv4, 0x21 TCP over IPv6, 0 unspecified
	src, dst *net.TCPAddr
}

// readPPv2 reads a PROXY protocol version 2 header (and nothing else: no
// version 1) from the start of a connection.
func readPPv2(r io.Reader) (*ppv2Header, error) {
	head := make([]byte, 16)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	if !bytes.Equal(head[:12], ppv2Signature) {
		return nil, fmt.Errorf("no PROXY v2 signature: %q", head)
	}
	if v := head[12] >> 4; v != 2 {
		return nil, fmt.Errorf("PROXY header version %d", v)
	}
	h := &ppv2Header{command: head[12] & 0x0f, family: head[13]}
	body := make([]byte, binary.BigEndian.Uint16(head[14:16]))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("reading the addresses: %w", err)
	}
	addrs := func(ipLen int) error {
		if len(body) < 2*ipLen+4 {
			return fmt.Errorf("%d octets of addresses, want %d", len(body), 2*ipLen+4)
		}
		h.src = &net.TCPAddr{IP: net.IP(body[:ipLen]), Port: int(binary.BigEndian.Uint16(body[2*ipLen:]))}
		h.dst = &net.TCPAddr{IP: net.IP(body[ipLen : 2*ipLen]), Port: int(binary.BigEndian.Uint16(body[2*ipLen+2:]))}
		return nil
	}
	switch h.family {
	case 0x11:
		return h, addrs(4)
	case 0x21:
		return h, addrs(16)
	}
	return h, nil
}

// ppConn is one connection a ppBackend accepted.
type ppConn struct {
	header *ppv2Header
	err    error    // no valid v2 header
	lines  []string // what the peer said after the greeting
}

func (c ppConn) String() string {
	if c.err != nil {
		return "{" + c.err.Error() + "}"
	}
	return fmt.Sprintf("{command %d family %#x src %v dst %v lines %q}", c.header.command, c.header.family, c.header.src, c.header.dst, c.lines)
}

// ppBackend stands in for a popbridge instance: it reads the PROXY v2
// header, greets with "+OK NAME CLIENT" (the header's source address) and
// answers QUIT.
type ppBackend struct {
	name  string
	ln    net.Listener
	mu    sync.Mutex
	conns []*ppConn
}

func startPPBackend(t *testing.T, name string) *ppBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &ppBackend{name: name, ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.handle(c)
			}()
		}
	}()
	return b
}

func (b *ppBackend) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	rec := &ppConn{}
	rec.header, rec.err = readPPv2(r)
	b.mu.Lock()
	b.conns = append(b.conns, rec)
	b.mu.Unlock()
	if rec.err != nil {
		return
	}
	client := "-"
	if rec.header.src != nil {
		client = rec.header.src.String()
	}
	fmt.Fprintf(c, "+OK %s %s\r\n", b.name, client)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		b.mu.Lock()
		rec.lines = append(rec.lines, line)
		b.mu.Unlock()
		if strings.EqualFold(line, "QUIT") {
			fmt.Fprint(c, "+OK bye\r\n")
			return
		}
		fmt.Fprint(c, "-ERR unknown command\r\n")
	}
}

// snapshot copies what the backend has seen so far.
func (b *ppBackend) snapshot() []ppConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ppConn, len(b.conns))
	for i, c := range b.conns {
		out[i] = *c
		out[i].lines = slices.Clone(c.lines)
	}
	return out
}

// healthChecks counts the connections that were HAProxy's health checks
// (LOCAL) and went through to QUIT.
func (b *ppBackend) healthChecks() int {
	n := 0
	for _, c := range b.snapshot() {
		if c.err == nil && c.header.command == 0 && slices.Contains(c.lines, "QUIT") {
			n++
		}
	}
	return n
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rewriteHAProxyAddrs replaces the addresses of the config's bind and
// server lines, and nothing else: binds by section name, servers by server
// name. Every bind and server must have a replacement.
func rewriteHAProxyAddrs(t *testing.T, data []byte, binds, servers map[string]string) []byte {
	t.Helper()
	var out bytes.Buffer
	section := ""
	for _, line := range strings.SplitAfter(string(data), "\n") {
		code, _, _ := strings.Cut(line, "#")
		words := strings.Fields(code)
		switch {
		case len(words) >= 2 && slices.Contains(haSectionKinds, words[0]):
			section = words[1]
		case len(words) >= 2 && words[0] == "bind":
			addr, ok := binds[section]
			if !ok {
				t.Fatalf("no address for the bind of %s", section)
			}
			line = strings.Replace(line, words[1], addr, 1)
		case len(words) >= 3 && words[0] == "server":
			addr, ok := servers[words[1]]
			if !ok {
				t.Fatalf("no address for server %s", words[1])
			}
			i := strings.Index(line, words[1]) + len(words[1])
			line = line[:i] + strings.Replace(line[i:], words[2], addr, 1)
		}
		out.WriteString(line)
	}
	return out.Bytes()
}

// lockedBuffer collects a process's output for the test's messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// haStats reads the statistics page's CSV: server name → column → value.
func haStats(statsURL, backend string) (map[string]map[string]string, error) {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(statsURL + ";csv")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	rows, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("# ")))).ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("statistics CSV: %v\n%s", err, body)
	}
	out := map[string]map[string]string{}
	for _, row := range rows[1:] {
		if len(row) < 2 || row[0] != backend || row[1] == "BACKEND" {
			continue
		}
		m := map[string]string{}
		for i, col := range rows[0] {
			if i < len(row) {
				m[col] = row[i]
			}
		}
		out[row[1]] = m
	}
	return out, nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(deadline time.Time, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestScaleHAProxyEndToEnd runs the committed HAProxy config, its addresses
// moved to loopback ports, in front of two stand-ins for popbridge that
// read the PROXY v2 header: clients' connections arrive with a header
// naming the client, health checks with one too (so popbridge does not
// refuse them) and see the POP3 greeting, and held sessions are spread
// over both instances.
func TestScaleHAProxyEndToEnd(t *testing.T) {
	haproxy := haproxyBinary(t)
	data, err := os.ReadFile(haproxyCfgFile)
	if err != nil {
		t.Fatal(err)
	}
	secs := parseHAProxy(t, data)
	var pop3Frontend, pop3Backend, statsSection string
	for _, sec := range secs {
		switch {
		case sec.kind == "frontend":
			pop3Frontend = sec.name
			if db := sec.find("default_backend"); len(db) > 0 {
				pop3Backend = db[0][0]
			}
		case sec.kind == "listen" && len(sec.find("stats", "enable")) > 0:
			statsSection = sec.name
		}
	}
	if pop3Frontend == "" || pop3Backend == "" || statsSection == "" {
		t.Fatalf("%s: want a frontend with a default_backend and a listen section with stats enable", haproxyCfgFile)
	}
	backends := map[string]*ppBackend{}
	servers := map[string]string{}
	for _, sec := range secs {
		for _, srv := range haServers(secs, sec) {
			backends[srv.name] = startPPBackend(t, srv.name)
			servers[srv.name] = backends[srv.name].ln.Addr().String()
		}
	}
	if len(backends) < 2 {
		t.Fatalf("%s: %d servers, want at least 2", haproxyCfgFile, len(backends))
	}
	frontAddr, statsAddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	cfg := rewriteHAProxyAddrs(t, data, map[string]string{pop3Frontend: frontAddr, statsSection: statsAddr}, servers)
	cfgFile := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var output lockedBuffer
	cmd := exec.Command(haproxy, "-db", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy's output:\n%s\nconfig:\n%s", output.String(), cfg)
		}
	})

	// Up when the statistics page answers (asking the POP3 port would be a
	// session of its own).
	statsURL := "http://" + statsAddr + "/"
	if !waitFor(time.Now().Add(5*time.Second), func() bool {
		select {
		case err := <-exited:
			exited <- err
			return true
		default:
		}
		_, err := haStats(statsURL, pop3Backend)
		return err == nil
	}) {
		t.Fatal("HAProxy's statistics page does not answer")
	}
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("haproxy exited: %v", err)
	default:
	}

	// Sessions held open: leastconn sends each to the instance with fewer.
	const sessions = 4
	type session struct {
		conn    net.Conn
		r       *bufio.Reader
		backend string
	}
	var held []session
	perBackend := map[string]int{}
	for i := 0; i < sessions; i++ {
		c, err := net.DialTimeout("tcp", frontAddr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		greeting, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("session %d: no greeting through HAProxy: %v", i, err)
		}
		f := strings.Fields(greeting)
		if len(f) != 3 || f[0] != "+OK" || backends[f[1]] == nil {
			t.Fatalf("session %d: greeting %q, want +OK BACKEND CLIENT", i, greeting)
		}
		if f[2] != c.LocalAddr().String() {
			t.Errorf("session %d: %s saw client %s in the PROXY header, the client is %s", i, f[1], f[2], c.LocalAddr())
		}
		perBackend[f[1]]++
		held = append(held, session{conn: c, r: r, backend: f[1]})
	}
	for name := range backends {
		if perBackend[name] != sessions/len(backends) {
			t.Errorf("sessions per instance %v: want them spread evenly (balance leastconn)", perBackend)
			break
		}
	}
	for i, s := range held {
		fmt.Fprint(s.conn, "QUIT\r\n")
		if line, err := s.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			t.Errorf("session %d: QUIT: %q %v", i, line, err)
		}
	}

	// Every connection came with a v2 header; the clients' with PROXY,
	// their address and the frontend's.
	for name, b := range backends {
		for _, c := range b.snapshot() {
			if c.err != nil {
				t.Errorf("%s: a connection without a valid PROXY v2 header: %v", name, c.err)
				continue
			}
			if c.header.command == 1 {
				if c.header.family != 0x11 || c.header.dst == nil || c.header.dst.String() != frontAddr {
					t.Errorf("%s: PROXY header family %#x, destination %v; want TCP over IPv4 to %s", name, c.header.family, c.header.dst, frontAddr)
				}
			}
		}
	}

	// Health checks: with a PROXY header (LOCAL: HAProxy's own
	// connection), through the greeting to QUIT; the instances UP.
	if !waitFor(start.Add(8*time.Second), func() bool {
		for _, b := range backends {
			if b.healthChecks() == 0 {
				return false
			}
		}
		return true
	}) {
		for name, b := range backends {
			t.Errorf("%s: %d complete health checks with a PROXY v2 LOCAL header; connections seen: %v", name, b.healthChecks(), b.snapshot())
		}
		t.FailNow()
	}
	var stats map[string]map[string]string
	if !waitFor(time.Now().Add(2*time.Second), func() bool {
		stats, err = haStats(statsURL, pop3Backend)
		if err != nil {
			return false
		}
		for name := range backends {
			if stats[name]["status"] != "UP" || stats[name]["check_status"] != "L7OK" {
				return false
			}
		}
		return true
	}) {
		for name := range backends {
			t.Errorf("%s: status %q, check_status %q (%s); want UP and L7OK", name, stats[name]["status"], stats[name]["check_status"], stats[name]["last_chk"])
		}
	}
	t.Logf("sessions per instance %v; health checks seen after %s", perBackend, time.Since(start).Round(time.Millisecond))
}
