#!/usr/bin/env bash
# Builds a kubelet for the Kubernetes-node tests into _output/kubelet/kubelet,
# from the Go module proxy: k8s.io/kubernetes requires its staging modules at
# v0.0.0 and replaces them with folders of its own repository, so a throwaway
# module under _output/kubelet requires it and replaces each staging module
# with its release at the matching v0 version. Kept once built (about 9
# minutes cold on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${KUBERNETES_VERSION:=v1.37.2}"
staging_version="v0.${KUBERNETES_VERSION#v1.}"

dir="$PWD/_output/kubelet"
if [[ -x "${dir}/kubelet" && -f "${dir}/kubelet.version" && "$(cat "${dir}/kubelet.version")" == "${KUBERNETES_VERSION}" ]]; then
	exit 0
fi
mkdir -p "${dir}"
cd "${dir}"
echo "building the kubelet of k8s.io/kubernetes@${KUBERNETES_VERSION}" >&2
gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
{
	printf 'module kubeletbuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "${KUBERNETES_VERSION}"
	sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "${gomod}" | sort -u |
		while read -r m; do printf '\t%s => %s %s\n' "${m}" "${m}" "${staging_version}"; done
	printf ')\n'
} >go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n' >tools.go
go mod tidy
go build -o kubelet k8s.io/kubernetes/cmd/kubelet
echo "${KUBERNETES_VERSION}" >kubelet.version
