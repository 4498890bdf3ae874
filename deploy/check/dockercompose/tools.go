//go:build tools

// Package dockercompose pins the Docker Compose CLI (github.com/docker/compose/v5/cmd, the
// docker-compose plugin that `docker compose` runs), so that deploy/check runs `docker
// compose config` itself on the Compose files. A module of its own so that Compose's
// dependencies stay out of deploy/check's.
package dockercompose

import _ "github.com/docker/compose/v5/cmd"
