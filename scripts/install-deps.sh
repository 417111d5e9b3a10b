#!/usr/bin/env bash
# Installs the system packages kybern needs (Debian/Ubuntu). With `--run`, only what
# building and running `kybern up` needs: protobuf (build-time, for etcd-client's gRPC),
# tzdata (CronJob time zones), containerd and runc (the node agent's runtime). Without it,
# also what the tests need: etcd-server (the etcd storage backend and its tests), unzip
# (unpacking the Helm binary the Helm tests fetch from npm; npm itself comes from Debian's
# npm package when the machine has no Node.js), busybox-static (the test busybox image),
# docker-registry and apache2-utils (htpasswd) for the local registry the image pull
# tests push to, python3-venv for the Python clients' end-to-end tests (tests/clients,
# installed from PyPI into a virtualenv). nftables and conntrack are the node agent's
# service proxy (the `nft` and `conntrack` tools); dnsperf is for `kybern bench services`.
set -euo pipefail

packages=(protobuf-compiler libprotobuf-dev tzdata containerd runc nftables conntrack)
tests=1
if [ "${1:-}" = "--run" ]; then
    tests=0
else
    packages+=(etcd-server unzip busybox-static docker-registry apache2-utils python3-venv dnsperf curl)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$tests" -eq 1 ]; then
    command -v npm >/dev/null || missing+=(npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
