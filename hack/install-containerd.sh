#!/usr/bin/env bash
# Installs the containerd daemon used by the tests and the demo into
# <repo>/_output/bin/containerd, built from source with `go install`.
#
# The version is pinned below and can be overridden with CONTAINERD_VERSION.
# Nothing is done when the installed binary already reports that version.
# runc is deliberately not installed: imgprune never starts tasks.
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
bin_dir="${repo_root}/_output/bin"
bin="${bin_dir}/containerd"

# `containerd --version` prints e.g.
#   containerd github.com/containerd/containerd/v2 2.4.2+unknown
# (the "+unknown" suffix comes from building without release ldflags).
want="${CONTAINERD_VERSION#v}"
want_re="${want//./\\.}"
if [[ -x "${bin}" ]] &&
	"${bin}" --version 2>/dev/null | grep -Eq "[[:space:]]v?${want_re}([+[:space:]]|$)"; then
	echo "containerd ${CONTAINERD_VERSION} already installed at ${bin}"
	exit 0
fi

# containerd 2.x lives in the /v2 module; 1.x in the bare module path.
case "${CONTAINERD_VERSION}" in
v1.*) module="github.com/containerd/containerd" ;;
*) module="github.com/containerd/containerd/v${want%%.*}" ;;
esac

mkdir -p "${bin_dir}"
# Build outside the repository so its go.mod is not involved.
(cd / && GOBIN="${bin_dir}" go install -tags no_btrfs \
	"${module}/cmd/containerd@${CONTAINERD_VERSION}")

if ! "${bin}" --version 2>/dev/null | grep -Eq "[[:space:]]v?${want_re}([+[:space:]]|$)"; then
	echo "installed ${bin} but it does not report version ${CONTAINERD_VERSION}:" >&2
	"${bin}" --version >&2 || true
	exit 1
fi
echo "installed containerd ${CONTAINERD_VERSION} to ${bin}"
