// Package deploy holds popbridge's packaging files, not code: the container
// image (Dockerfile), a docker compose demo with a Dovecot upstream
// (docker-compose.yml, compose/), Kubernetes manifests (kubernetes/) and a
// systemd unit (systemd/). Its tests check those files against each other
// and against popbridge's own config validation; README.md explains them.
package deploy
