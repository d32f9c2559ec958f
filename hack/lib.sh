# Shared by hack/containerd-up.sh and hack/containerd-down.sh; sourced, not run.

# running PID: succeeds when PID is a live (non-zombie) containerd using
# ${config}. Uses builtins only, as it is polled.
running() {
	local pid="$1" stat args
	[[ "${pid}" =~ ^[0-9]+$ ]] || return 1
	read -r stat 2>/dev/null <"/proc/${pid}/stat" || return 1
	stat="${stat##*) }"
	[[ -n "${stat}" && "${stat:0:1}" != Z ]] || return 1
	mapfile -d '' args 2>/dev/null <"/proc/${pid}/cmdline" || return 1
	[[ " ${args[*]} " == *" --config ${config} "* ]]
}
