#!/usr/bin/env bash
# Install the Debian packages envlock's demo and tests use, if missing (needs root).
#   docker.io        the engine (tests start dockerd on a private socket)
#   docker-registry  an OCI registry on 127.0.0.1
#   mmdebstrap       debian:SUITE base images
#   skopeo, umoci    independent readers of envlock's OCI layouts
#   containerd       a second engine (ctr, with runc) that pulls, unpacks and runs envlock's zstd pushes
#   podman           a third engine (containers/image + containers/storage) for the same pushes
#   faketime         the faked clock of the reproducibility test
#   tmux             the real-terminal TUI test
#   bubblewrap       the sandbox for code taken from outside (a base's interpreter, sdist builds)
#   git, make, python3-venv
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(git make docker.io docker-registry mmdebstrap skopeo umoci containerd runc podman uidmap faketime libfaketime tmux bubblewrap)
need=()
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages: ${need[*]}" >&2
  echo "hint: sudo apt-get install ${need[*]}" >&2
  exit 3
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
