#!/usr/bin/env bash
# Puts a docker CLI at _output/bin/docker for the tests that drive
# `imgprune serve` with it: the one on PATH when there is one, else the
# client out of Debian's docker-cli (or docker.io) package, extracted, not
# installed: no engine, no service, no dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=_output/bin/docker
if [[ -x $bin ]]; then
	exit 0
fi
mkdir -p _output/bin
if onpath="$(command -v docker)"; then
	ln -sf "$onpath" "$bin"
	exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
download() {
	(cd "$tmp" && { apt-get download -qq docker-cli 2>/dev/null || apt-get download -qq docker.io; })
}
if ! download; then
	apt-get update -qq
	download
fi
dpkg-deb -x "$tmp"/*.deb "$tmp/pkg"
install -m 0755 "$tmp/pkg/usr/bin/docker" "$bin"
"$bin" --version
