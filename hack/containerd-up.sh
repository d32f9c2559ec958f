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
# With IMGPRUNE_CRI=1 the daemon is also a Kubernetes node's runtime: its CRI
# plugin serves the CRI runtime and image services on the same gRPC socket
# (crictl --runtime-endpoint unix://DIR/containerd.sock), with, under DIR:
#
#   DIR/root/io.containerd.grpc.v1.cri, DIR/state/io.containerd.grpc.v1.cri
#                            the CRI plugin's own files
#   DIR/certs.d              registry hosts configuration: the caller writes
#                            DIR/certs.d/HOST[:PORT]/hosts.toml
#   DIR/runc                 runc's state (runc --root)
#   DIR/cni/bin, DIR/cni/net.d
#                            CNI dirs, left empty: the node's network is not
#                            ready, so only host-network pods can run
#   DIR/cdi                  CDI spec dir, empty
#   DIR/s                    the shims' sockets (when DIR is at most 40 bytes
#                            long; else in /run/containerd/s)
#   DIR/crictl.yaml          crictl's endpoints: crictl --config DIR/crictl.yaml
#
# Pods run with runc (cgroupfs driver), overlayfs snapshots, no AppArmor, no
# NRI, and the streaming server (exec, attach, port-forward) on 127.0.0.1 on
# a free port. runc (make node-deps) is built with seccomp, so pods may ask
# for the runtime's default profile.
#
# An existing DIR is reused, so the image store survives a down/up cycle
# when hack/containerd-down.sh was run with KEEP=1.
#
# Environment:
#   IMGPRUNE_CONTAINERD_BIN  containerd binary (default <repo>/_output/bin/containerd)
#   CONTAINERD_LOG_LEVEL     info (default), debug or trace
#   CONTAINERD_START_TIMEOUT seconds to wait for the daemon (default 30)
#   IMGPRUNE_GC              test (default): the daemon schedules its own
#                            collections at most every ~5 s; default:
#                            containerd's own schedule, as in production
#   IMGPRUNE_CRI             1 enables the CRI plugin (default: disabled)
#   IMGPRUNE_SANDBOX_IMAGE   with IMGPRUNE_CRI=1, required: the pod sandbox
#                            (pause) image, pinned so that image garbage
#                            collection keeps it; pulled on the first pod when
#                            not in namespace k8s.io already
#   IMGPRUNE_RUNC            with IMGPRUNE_CRI=1: the runc binary (default
#                            <repo>/_output/e2e/bin/runc); the daemon finds
#                            containerd-shim-runc-v2 on its PATH, which starts
#                            with <repo>/_output/e2e/bin (make node-deps)
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
cri="${IMGPRUNE_CRI:-}"
gc="${IMGPRUNE_GC:-test}"
if [[ "${gc}" != test && "${gc}" != default ]]; then
	echo "containerd-up: IMGPRUNE_GC must be test or default" >&2
	exit 2
fi
node_bin="${repo_root}/_output/e2e/bin"

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
case "${cri}" in
'' | 0) cri="" ;;
1)
	sandbox_image="${IMGPRUNE_SANDBOX_IMAGE:-}"
	runc="${IMGPRUNE_RUNC:-${node_bin}/runc}"
	if [[ -z "${sandbox_image}" ]]; then
		echo "containerd-up: IMGPRUNE_CRI=1 needs IMGPRUNE_SANDBOX_IMAGE, the pod sandbox (pause) image" >&2
		exit 2
	fi
	if [[ ! -x "${runc}" || -d "${runc}" ]]; then
		echo "containerd-up: ${runc} not found; run 'make node-deps'" >&2
		exit 1
	fi
	runc="$(cd "$(dirname "${runc}")" && pwd -P)/$(basename "${runc}")"
	case "${sandbox_image}${runc}" in
	*\'* | *$'\n'*)
		echo "containerd-up: IMGPRUNE_SANDBOX_IMAGE and IMGPRUNE_RUNC must not contain quotes or newlines" >&2
		exit 2
		;;
	esac
	if [[ ! -x "${node_bin}/containerd-shim-runc-v2" ]]; then
		echo "containerd-up: ${node_bin}/containerd-shim-runc-v2 not found; run 'make node-deps'" >&2
		exit 1
	fi
	;;
*)
	echo "containerd-up: IMGPRUNE_CRI must be 1, 0 or empty" >&2
	exit 2
	;;
esac
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

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
# are heavy (CRI, unless IMGPRUNE_CRI=1), talk to the host outside DIR (NRI
# socket in /var/run/nri, /opt/containerd, host cgroups) or only add
# background activity. The remaining plugins include content, metadata,
# images, leases, namespaces, containers, snapshots (overlayfs, native),
# diff, gc scheduler, introspection, transfer, events, tasks (API only, but
# for CRI mode: no runc is installed otherwise), sandbox store and
# controllers.
cri_plugins=(
	io.containerd.grpc.v1.cri
	io.containerd.cri.v1.images
	io.containerd.cri.v1.runtime
	io.containerd.podsandbox.controller.v1.podsandbox
)
disabled=(
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
# In CRI mode the CRI plugins must load: containerd exits at boot when one
# fails, instead of booting without CRI.
if [[ -n "${cri}" ]]; then
	required+=("${cri_plugins[@]}")
	mkdir -p "${dir}/certs.d" "${dir}/runc" "${dir}/cni/bin" "${dir}/cni/net.d" "${dir}/cdi"
else
	disabled=("${cri_plugins[@]}" "${disabled[@]}")
fi
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
if [[ "${gc}" == test ]]; then
	cat >>"${config}" <<EOF
  # Collections the daemon schedules itself come at most every ~5 s (the
  # default 0.02 makes it ~250 ms after any deletion), so that what a test
  # finds between two of its steps is what it did; collections asked for
  # (imgprune's, a synchronous lease delete) still run at once.
  # IMGPRUNE_GC=default keeps containerd's own schedule.
  [plugins.'io.containerd.gc.v1.scheduler']
    pause_threshold = 0.001
EOF
fi

if [[ -n "${cri}" ]]; then
	# The CRI plugin's root and state dirs are <root>/io.containerd.grpc.v1.cri
	# and <state>/io.containerd.grpc.v1.cri. Pod logs go where the caller's
	# PodSandboxConfig.log_directory says.
	cat >>"${config}" <<EOF

  # CRI (IMGPRUNE_CRI=1).
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '${sandbox_image}'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '${dir}/certs.d'

  [plugins.'io.containerd.cri.v1.runtime']
    # The default profile would have to be loaded into the host's kernel
    # with apparmor_parser.
    disable_apparmor = true
    # No lower OOM score than containerd's own: setting the sandbox's -998
    # needs CAP_SYS_RESOURCE, which containerd may not have (runc init
    # fails with "failed to update /proc/self/oom_score_adj: Permission
    # denied").
    restrict_oom_score_adj = true
    # Pod network namespaces (of non-host-network pods) under DIR/state,
    # not /var/run/netns.
    netns_mounts_under_state_dir = true
    # CDI cannot be turned off in containerd 2.x (enable_cdi is gone); its
    # spec dir is empty.
    cdi_spec_dirs = ['${dir}/cdi']
    enable_criu = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        sandboxer = 'podsandbox'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '${runc}'
          Root = '${dir}/runc'
          # cgroupfs: works on cgroup v1, hybrid and v2 hosts without systemd.
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['${dir}/cni/bin']
      conf_dir = '${dir}/cni/net.d'

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
EOF
	cat >"${dir}/crictl.yaml" <<EOF
runtime-endpoint: unix://${sock}
image-endpoint: unix://${sock}
timeout: 30
EOF
	# The shims' sockets go to DIR/s rather than /run/containerd/s when the
	# path is short enough for containerd (at most 42 bytes).
	if ((${#dir} + 2 <= 42)); then
		cat >>"${config}" <<EOF

  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '${dir}/s'
EOF
	fi
fi

if [[ -f "${log}" ]]; then
	mv -f "${log}" "${log}.prev"
fi
: >"${log}"

# The inner shell records its own PID and then execs containerd, so the PID
# file is right whether or not setsid has to fork. In CRI mode containerd
# starts containerd-shim-runc-v2 from its PATH.
daemon_path="${PATH}"
if [[ -n "${cri}" ]]; then
	daemon_path="${node_bin}:${PATH}"
fi
# shellcheck disable=SC2016 # $$ must expand in the inner shell
PATH="${daemon_path}" setsid sh -c 'echo $$ >"$1"; shift; exec "$@"' containerd-up "${pidfile}" \
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
