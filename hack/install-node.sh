#!/usr/bin/env bash
# Builds what the Kubernetes-node tests run into _output/e2e/bin, from the Go
# module proxy: runc and containerd's runc shim (for a containerd with its
# CRI plugin, hack/containerd-up.sh with IMGPRUNE_CRI=1), crictl to drive it,
# and a registry (distribution) to pull from. Each is kept once built, with
# NAME.version beside it (see build in hack/lib.sh). hack/install-e2e.sh
# runs this first.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

: "${RUNC_VERSION:=v1.5.2}"
: "${CRICTL_VERSION:=v1.37.0}"
: "${REGISTRY_VERSION:=v3.1.2}"
containerd_version="$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"

# runc with seccomp, as a node's runc is: the kubelet and the DaemonSet ask
# for the runtime's default profile. It links libseccomp (Debian's
# libseccomp-dev; .ci/run installs it).
if ! pkg-config --exists libseccomp 2>/dev/null; then
	echo "install-node: runc needs libseccomp's headers: apt-get install libseccomp-dev pkg-config" >&2
	exit 1
fi
build runc "github.com/opencontainers/runc@${RUNC_VERSION}" -tags seccomp
build containerd-shim-runc-v2 "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@${containerd_version}"
build crictl "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}"
build registry "github.com/distribution/distribution/v3/cmd/registry@${REGISTRY_VERSION}"
