#!/usr/bin/env bash
# Builds what the end-to-end tests run a Docker Engine with into
# _output/e2e/bin, from the Go module proxy: what hack/install-node.sh builds
# (runc, used by dockerd, and containerd's runc shim, for the private
# containerd the engine uses; crictl and a registry), then dockerd (moby's
# containerd image store). Each is kept once built (see build in
# hack/lib.sh): dockerd takes about 6 minutes cold on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

: "${DOCKERD_VERSION:=v2.0.0-beta.24}"

hack/install-node.sh
build dockerd "github.com/moby/moby/v2/cmd/dockerd@${DOCKERD_VERSION}"
