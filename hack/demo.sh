#!/usr/bin/env bash
# The demo: a private containerd, a set of images with shared layers, some
# used by containers by name, by ID, by digest, through CRI's metadata and
# through a rootfs whose tag moved; a dry run, a prune, and a check that
# every used image survived. Run it with `make demo`.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${repo_root}"
bin="${repo_root}/_output/bin"
dir="$(mktemp -d /tmp/imgprune-demo.XXXXXX)"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

cleanup() { hack/containerd-down.sh "${dir}" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "Start a private containerd in ${dir}"
export CONTAINERD_ADDRESS
CONTAINERD_ADDRESS="$(hack/containerd-up.sh "${dir}" | tail -n 1)"
# A Docker Engine's namespace: a dangling record per image is its refcount.
export CONTAINERD_NAMESPACE=moby
# The native snapshotter works on every filesystem, also inside containers.
export CONTAINERD_SNAPSHOTTER=native
# The daemon runs here: let imgprune check that freed blobs left the disk.
export CONTAINERD_ROOT="${dir}/root"
imgprune="${bin}/imgprune"

step "Generate 12 images with shared layers into an OCI archive"
listing="$("${bin}/genimages" -o "${dir}/images.tar" -count 12 -layers 3 -layer-size 262144 \
	-shared 0.34 -extra-names 3 -prefix example.com/demo/app -seed demo -labels tier=batch)"
echo "${listing}"
digest_of() { echo "${listing}" | awk -F'\t' -v n="$1" '{split($1, names, ","); for (i in names) if (names[i] == n) print $2}'; }
app1="$(digest_of example.com/demo/app1:latest)"
app2="$(digest_of example.com/demo/app2:latest)"
app3="$(digest_of example.com/demo/app3:latest)"
app0="$(digest_of example.com/demo/app0:latest)"
app4="$(digest_of example.com/demo/app4:latest)"
app5="$(digest_of example.com/demo/app5:latest)"

step "Load it, unpacked into the snapshotter as docker load does"
run "${imgprune}" load -i "${dir}/images.tar"

step "Move a tag: app11's old target becomes a dangling <none> image"
run "${imgprune}" tag example.com/demo/app10 example.com/demo/app11

step "Create containers that use images by name, by ID and by digest, a pod's container made as CRI makes it, and one that runs app5"
mk() { "${bin}/mkcontainer" -namespace moby -snapshotter "${CONTAINERD_SNAPSHOTTER}" "$@"; }
mk by-name example.com/demo/app0
mk by-full-id "${app1}"
mk by-short-id-12 "${app2:7:12}"
mk by-digest "example.com/demo/app3@${app3}"
mk -cri pod example.com/demo/app4:latest
mk -rootfs runs-app5 example.com/demo/app5:latest

step "Move app5's tag to app6's image: the container still runs the old app5 (its rootfs says so)"
run "${imgprune}" tag example.com/demo/app6 example.com/demo/app5

step "The store before"
run "${imgprune}" images

step "What a prune -a would do (nothing changes)"
run "${imgprune}" prune -a --dry-run

step "Prune"
run "${imgprune}" prune -a -f

step "The store after"
after="$("${imgprune}" images)"
echo "${after}"

step "Check that every used image survived"
json="$("${imgprune}" images --format json)"
ok=1
for want in "${app0}" "${app1}" "${app2}" "${app3}" "${app4}" "${app5}"; do
	if grep -q "\"${want}\"" <<<"${json}"; then
		echo "kept ${want}"
	else
		echo "LOST ${want}" >&2
		ok=0
	fi
done
grep -q 'example.com/demo/app0 ' <<<"${after}" || { echo "LOST the name app0 that a container uses" >&2; ok=0; }
grep -q 'example.com/demo/app4 ' <<<"${after}" || { echo "LOST the name app4 that the pod's container runs" >&2; ok=0; }
if [[ "$("${imgprune}" prune -a -f --format json)" != *'"SpaceReclaimed":0'* ]]; then
	echo "a second prune still found something to remove" >&2
	ok=0
fi
[[ ${ok} == 1 ]] || exit 1
echo "every image a container uses is still there; a second prune has nothing to do"

step "Hard prune: a blob a crash left on disk, which no metadata knows"
orphan="${dir}/root/io.containerd.content.v1.content/blobs/sha256"
head -c 65536 /dev/urandom >"${dir}/orphan"
orphan="${orphan}/$(sha256sum "${dir}/orphan" | cut -d' ' -f1)"
mv "${dir}/orphan" "${orphan}"
run "${imgprune}" check
run "${imgprune}" check --delete
[[ ! -e ${orphan} ]] || { echo "the orphaned blob is still on disk" >&2; exit 1; }
step "Stop containerd"
