#!/usr/bin/env bash
# Builds what the end-to-end tests run a Docker Engine with into
# _output/e2e/bin, from the Go module proxy: dockerd (moby's containerd image
# store), runc for dockerd, and containerd's runc shim for the private
# containerd the engine uses. Each is kept once built: dockerd takes about 6
# minutes cold on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DOCKERD_VERSION:=v2.0.0-beta.24}"
: "${RUNC_VERSION:=v1.5.2}"
containerd_version="$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"

bin="$PWD/_output/e2e/bin"
mkdir -p "$bin"
build() {
	local name="$1" pkg="$2"
	if [[ -x "$bin/$name" && -f "$bin/$name.version" && "$(cat "$bin/$name.version")" == "$pkg" ]]; then
		return
	fi
	echo "building $pkg" >&2
	GOBIN="$bin" go install "$pkg"
	echo "$pkg" >"$bin/$name.version"
}
build dockerd "github.com/moby/moby/v2/cmd/dockerd@${DOCKERD_VERSION}"
build runc "github.com/opencontainers/runc@${RUNC_VERSION}"
build containerd-shim-runc-v2 "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@${containerd_version}"
