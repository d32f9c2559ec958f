#!/usr/bin/env bash
# Usage: hack/containerd-down.sh DIR
#
# Stops the containerd started by hack/containerd-up.sh DIR: SIGTERM, then
# SIGKILL after 10 seconds. For a CRI-mode daemon (IMGPRUNE_CRI=1, DIR/runc
# exists) it then deletes with runc --force the containers still running
# (pods not removed before) and kills their shims, which outlive containerd.
# Then lazily unmounts everything still mounted under DIR (deepest first)
# and removes DIR, unless KEEP is set to a non-empty value. Safe to run when
# nothing is running or DIR is gone.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi

if [[ ! -d "$1" ]]; then
	echo "containerd-down: ${1} does not exist, nothing to do"
	exit 0
fi
dir="$(cd "$1" && pwd -P)"
if [[ "${dir}" == / ]]; then
	echo "containerd-down: refusing to operate on /" >&2
	exit 2
fi
config="${dir}/config.toml"
pidfile="${dir}/containerd.pid"

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stopped="not running"
if [[ -f "${pidfile}" ]]; then
	pid="$(cat "${pidfile}")"
	if running "${pid}"; then
		kill -TERM "${pid}" 2>/dev/null || true
		for _ in $(seq 100); do
			running "${pid}" || break
			sleep 0.1
		done
		stopped="stopped pid ${pid}"
		if running "${pid}"; then
			echo "containerd-down: pid ${pid} ignored SIGTERM for 10s, sending SIGKILL" >&2
			kill -KILL "${pid}" 2>/dev/null || true
			for _ in $(seq 50); do
				running "${pid}" || break
				sleep 0.1
			done
			if running "${pid}"; then
				echo "containerd-down: pid ${pid} survived SIGKILL" >&2
				exit 1
			fi
			stopped="killed pid ${pid}"
		fi
	fi
	rm -f "${pidfile}"
fi

# CRI-mode leftovers. runc delete --force kills a container's processes and
# removes its cgroup and state; the shims, started with -address
# DIR/containerd.sock, wait for a containerd that is gone.
if [[ -d "${dir}/runc" ]]; then
	runc_bin="$(sed -n "s/^ *BinaryName = '\(.*\)'\$/\1/p" "${config}" 2>/dev/null | head -n 1 || true)"
	leftovers=0
	for root in "${dir}"/runc/*/; do
		[[ -d "${root}" ]] || continue
		if [[ ! -x "${runc_bin}" ]]; then
			echo "containerd-down: no runc (BinaryName in ${config}) to delete the containers in ${root}" >&2
			break
		fi
		while IFS= read -r id; do
			[[ -n "${id}" ]] || continue
			"${runc_bin}" --root "${root}" delete --force "${id}" >&2 || true
			leftovers=$((leftovers + 1))
		done < <("${runc_bin}" --root "${root}" list -q 2>/dev/null)
	done
	shims=()
	for proc in /proc/[0-9]*; do
		mapfile -d '' args 2>/dev/null <"${proc}/cmdline" || continue
		[[ "${args[0]:-}" == *containerd-shim* && " ${args[*]} " == *" -address ${dir}/containerd.sock "* ]] || continue
		shims+=("${proc#/proc/}")
	done
	if ((${#shims[@]} > 0)); then
		kill -KILL "${shims[@]}" 2>/dev/null || true
	fi
	if ((leftovers + ${#shims[@]} > 0)); then
		stopped="${stopped}, deleted ${leftovers} leftover container(s), killed ${#shims[@]} shim(s)"
	fi
fi

# mounts_under: mount points at or below DIR, deepest first. Field 5 of
# mountinfo is the mount point with space, tab, newline and backslash
# octal-escaped.
mounts_under() {
	awk -v d="${dir}" '
		function unescape(s,   out, i, c) {
			out = ""
			for (i = 1; i <= length(s); i++) {
				c = substr(s, i, 1)
				if (c == "\\" && substr(s, i + 1, 3) ~ /^[0-7][0-7][0-7]$/) {
					out = out sprintf("%c", (substr(s, i + 1, 1) * 64) + (substr(s, i + 2, 1) * 8) + substr(s, i + 3, 1))
					i += 3
				} else {
					out = out c
				}
			}
			return out
		}
		{
			m = unescape($5)
			if (m == d || index(m, d "/") == 1) {
				print gsub("/", "/", m) "\t" m
			}
		}' /proc/self/mountinfo | sort -rn -k1,1 | cut -f2-
}

unmounted=0
while IFS= read -r m; do
	[[ -n "${m}" ]] || continue
	if umount -l "${m}" 2>/dev/null; then
		unmounted=$((unmounted + 1))
	elif grep -qF " ${m} " /proc/self/mountinfo; then
		echo "containerd-down: failed to unmount ${m}" >&2
	fi
done < <(mounts_under)

if [[ -n "${KEEP:-}" ]]; then
	echo "containerd-down: ${stopped}, unmounted ${unmounted}, kept ${dir}"
	exit 0
fi

if [[ -n "$(mounts_under)" ]]; then
	echo "containerd-down: mounts remain under ${dir}, not removing it:" >&2
	mounts_under >&2
	exit 1
fi
rm -rf --one-file-system "${dir}"
echo "containerd-down: ${stopped}, unmounted ${unmounted}, removed ${dir}"
