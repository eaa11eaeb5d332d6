// Package metrics defines every Prometheus metric popbridge exports, in one
// place, on a registry of its own, and serves them with the health
// endpoints: /metrics, /healthz and /readyz.
//
// The protocol packages know nothing of Prometheus: pop3.Server,
// imapupstream.Config and proxy.Options each take a small observer
// interface, which Metrics implements through POP3, Upstream and Proxy.
package metrics
