// Package deploy holds popbridge's packaging files, not code: the container
// image (Dockerfile), a docker compose demo with a Dovecot upstream
// (docker-compose.yml, compose/), a scale-out compose file with two
// instances behind HAProxy on PostgreSQL (docker-compose.scale.yml),
// Kubernetes manifests (kubernetes/) and a systemd unit (systemd/). Its tests check those files against each other
// and against popbridge's own config validation; README.md explains them.
package deploy
