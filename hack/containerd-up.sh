#!/usr/bin/env bash
# Usage: hack/containerd-up.sh DIR
#
# Starts a private containerd daemon (as root) whose state lives entirely
# under DIR:
#
#   DIR/config.toml          generated configuration
#   DIR/root, DIR/state      containerd root and state directories
#   DIR/tmp                  containerd's temporary directory
#   DIR/containerd.sock      gRPC socket (DIR/containerd.sock.ttrpc for ttrpc)
#   DIR/debug.sock           debug (pprof) socket
#   DIR/containerd.log       daemon log (the previous one is kept as .log.prev)
#   DIR/containerd.pid       daemon PID
#
# An existing DIR is reused, so the image store survives a down/up cycle
# when hack/containerd-down.sh was run with KEEP=1.
#
# Environment:
#   IMGPRUNE_CONTAINERD_BIN  containerd binary (default <repo>/_output/bin/containerd)
#   CONTAINERD_LOG_LEVEL     info (default), debug or trace
#   CONTAINERD_START_TIMEOUT seconds to wait for the daemon (default 30)
#
# Prints the gRPC socket path on success. Stop with hack/containerd-down.sh DIR.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
bin="${IMGPRUNE_CONTAINERD_BIN:-${repo_root}/_output/bin/containerd}"
log_level="${CONTAINERD_LOG_LEVEL:-info}"
timeout="${CONTAINERD_START_TIMEOUT:-30}"

if [[ ! "${timeout}" =~ ^[1-9][0-9]*$ ]]; then
	echo "containerd-up: CONTAINERD_START_TIMEOUT must be a positive number of seconds" >&2
	exit 2
fi
if [[ "$(id -u)" -ne 0 ]]; then
	echo "containerd-up: must run as root" >&2
	exit 1
fi
if [[ ! -x "${bin}" ]]; then
	echo "containerd-up: ${bin} not found; run 'make containerd'" >&2
	exit 1
fi
case "${log_level}" in
info | debug | trace) ;;
*)
	# Readiness is detected from an info-level log line.
	echo "containerd-up: CONTAINERD_LOG_LEVEL must be info, debug or trace" >&2
	exit 2
	;;
esac

mkdir -p "$1"
dir="$(cd "$1" && pwd -P)"
case "${dir}" in
*\'* | *$'\n'*)
	echo "containerd-up: DIR must not contain quotes or newlines: ${dir}" >&2
	exit 2
	;;
esac

sock="${dir}/containerd.sock"
config="${dir}/config.toml"
log="${dir}/containerd.log"
pidfile="${dir}/containerd.pid"

# sun_path is 108 bytes including the trailing NUL; the ttrpc socket is the
# longest one we create.
if ((${#sock} + 6 > 107)); then
	echo "containerd-up: DIR is too long for a unix socket path (${sock}.ttrpc); use a shorter one, e.g. mktemp -d" >&2
	exit 2
fi

# running PID: succeeds when PID is a live (non-zombie) containerd using our
# config. Uses builtins only, as it is polled.
running() {
	local pid="$1" stat args
	[[ "${pid}" =~ ^[0-9]+$ ]] || return 1
	read -r stat 2>/dev/null <"/proc/${pid}/stat" || return 1
	stat="${stat##*) }"
	[[ -n "${stat}" && "${stat:0:1}" != Z ]] || return 1
	mapfile -d '' args 2>/dev/null <"/proc/${pid}/cmdline" || return 1
	[[ " ${args[*]} " == *" --config ${config} "* ]]
}

if [[ -f "${pidfile}" ]]; then
	old="$(cat "${pidfile}")"
	if running "${old}"; then
		echo "containerd-up: containerd already running in ${dir} (pid ${old}); stop it with hack/containerd-down.sh ${dir}" >&2
		exit 1
	fi
	rm -f "${pidfile}"
fi

mkdir -p "${dir}/root" "${dir}/state" "${dir}/tmp"

# Plugins not needed to manage an image store. They are disabled because they
# are heavy (CRI), talk to the host outside DIR (NRI socket in /var/run/nri,
# /opt/containerd, host cgroups) or only add background activity.
# The remaining plugins include content, metadata, images, leases,
# namespaces, containers, snapshots (overlayfs, native), diff, gc scheduler,
# introspection, transfer, events, tasks (API only; no runc is installed).
disabled=(
	io.containerd.grpc.v1.cri
	io.containerd.cri.v1.images
	io.containerd.cri.v1.runtime
	io.containerd.podsandbox.controller.v1.podsandbox
	io.containerd.nri.v1.nri
	io.containerd.internal.v1.tracing
	io.containerd.tracing.processor.v1.otlp
	io.containerd.ttrpc.v1.otelttrpc
	io.containerd.internal.v1.opt
	io.containerd.monitor.container.v1.restart
	io.containerd.monitor.task.v1.cgroups
	io.containerd.snapshotter.v1.blockfile
	io.containerd.snapshotter.v1.devmapper
	io.containerd.snapshotter.v1.zfs
	io.containerd.snapshotter.v1.erofs
	io.containerd.differ.v1.erofs
	io.containerd.mount-handler.v1.erofs
)
# containerd exits at boot when one of these fails to load.
required=(
	io.containerd.content.v1.content
	io.containerd.metadata.v1.bolt
	io.containerd.gc.v1.scheduler
	io.containerd.lease.v1.manager
	io.containerd.snapshotter.v1.native
	io.containerd.differ.v1.walking
	io.containerd.transfer.v1.local
	io.containerd.grpc.v1.content
	io.containerd.grpc.v1.images
	io.containerd.grpc.v1.leases
	io.containerd.grpc.v1.namespaces
	io.containerd.grpc.v1.containers
	io.containerd.grpc.v1.snapshots
	io.containerd.grpc.v1.diff
	io.containerd.grpc.v1.introspection
	io.containerd.grpc.v1.transfer
	io.containerd.grpc.v1.version
)
toml_list() {
	local sep="" item
	printf '['
	for item in "$@"; do
		printf "%s\n  '%s'" "${sep}" "${item}"
		sep=","
	done
	printf '\n]'
}

cat >"${config}" <<EOF
# Generated by hack/containerd-up.sh; rewritten on every start.
version = 3
root = '${dir}/root'
state = '${dir}/state'
temp = '${dir}/tmp'
disabled_plugins = $(toml_list "${disabled[@]}")
required_plugins = $(toml_list "${required[@]}")

[grpc]
  address = '${sock}'

[ttrpc]
  address = '${sock}.ttrpc'

[debug]
  address = '${dir}/debug.sock'
  level = '${log_level}'

[plugins]
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = '${dir}/image-verifier/bin'
EOF

if [[ -f "${log}" ]]; then
	mv -f "${log}" "${log}.prev"
fi
: >"${log}"

# The inner shell records its own PID and then execs containerd, so the PID
# file is right whether or not setsid has to fork.
# shellcheck disable=SC2016 # $$ must expand in the inner shell
setsid sh -c 'echo $$ >"$1"; shift; exec "$@"' containerd-up "${pidfile}" \
	"${bin}" --config "${config}" </dev/null >>"${log}" 2>&1 &
disown

fail() {
	echo "containerd-up: $*" >&2
	echo "---- last lines of ${log} ----" >&2
	tail -n 40 "${log}" >&2 || true
	if [[ -n "${pid:-}" ]] && running "${pid}"; then
		kill -KILL "${pid}" 2>/dev/null || true
	fi
	rm -f "${pidfile}"
	exit 1
}

pid=""
tries=$((timeout * 10))
while :; do
	if [[ -z "${pid}" && -s "${pidfile}" ]]; then
		read -r pid <"${pidfile}" || true
	fi
	if [[ -n "${pid}" ]]; then
		if ! running "${pid}"; then
			fail "containerd (pid ${pid}) exited during startup"
		fi
		if [[ -S "${sock}" ]] && grep -q "containerd successfully booted" "${log}"; then
			break
		fi
	fi
	tries=$((tries - 1))
	if ((tries <= 0)); then
		fail "containerd did not become ready within ${timeout}s"
	fi
	sleep 0.1
done

echo "${sock}"
