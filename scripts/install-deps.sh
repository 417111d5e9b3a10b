#!/usr/bin/env bash
# Installs the system packages kybern needs to build, test and run (Debian/Ubuntu).
# protobuf: build-time for etcd-client's gRPC; etcd-server: the etcd storage backend
# and its tests; unzip: unpacking the Helm binary the Helm tests fetch from npm (npm
# itself comes from Debian's npm package when the machine has no Node.js). containerd,
# runc: the node agent's runtime and its tests; busybox-static: the test busybox image;
# docker-registry, apache2-utils (htpasswd): the local registry the image pull tests push to.
# The node agent will add nftables here.
set -euo pipefail

packages=(protobuf-compiler libprotobuf-dev etcd-server unzip tzdata containerd runc busybox-static docker-registry apache2-utils)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
