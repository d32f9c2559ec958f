# Shared by the hack/ scripts; sourced, not run. running is for
# hack/containerd-up.sh and hack/containerd-down.sh, build for
# hack/install-node.sh and hack/install-e2e.sh.

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

# build NAME MODULE/PKG@VERSION [GO INSTALL FLAGS...]: go installs the
# package into <repo>/_output/e2e/bin unless NAME is already there with
# NAME.version beside it naming the same package, version and flags, then
# records that file. Used by hack/install-node.sh and hack/install-e2e.sh.
build() {
	local name="$1" pkg="$2" dest want
	shift 2
	dest="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)/_output/e2e/bin"
	want="${pkg}${*:+ $*}"
	mkdir -p "${dest}"
	if [[ -x "${dest}/${name}" && -f "${dest}/${name}.version" && "$(cat "${dest}/${name}.version")" == "${want}" ]]; then
		return
	fi
	echo "building ${want}" >&2
	GOBIN="${dest}" go install "$@" "${pkg}"
	echo "${want}" >"${dest}/${name}.version"
}
