#!/usr/bin/env bash
# Build the aibrix image (runtime sidecar, downloader and controller) without a container registry: a minimal
# Debian 12 root made with debootstrap (Debian's mirror, as apt uses it), imported into buildah as the base, then
# deploy/Dockerfile built on it with BASE=<that base> and the wheels built here beforehand (no network inside the
# build). Cached in buildah's store, keyed by a hash of everything the image is built from. Prints the image last.
set -euo pipefail
cd "$(dirname "$0")/.."
export STORAGE_DRIVER=vfs  # works on any filesystem, no fuse-overlayfs needed
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,ca-certificates

need() { command -v "$1" >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null; }; }
need debootstrap debootstrap
need buildah buildah

TRIM="usr/share/doc usr/share/man usr/share/locale usr/share/info usr/lib/x86_64-linux-gnu/gconv"  # unused here
base_key=$(printf '%s %s %s %s' bookworm "$MIRROR" "$PACKAGES" "$TRIM" | sha256sum | cut -c1-12)
base=localhost/aibrix-base:bookworm-$base_key
if ! buildah images -q "$base" >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "build_image: debootstrap bookworm (minbase + $PACKAGES)" >&2
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$work/root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  for path in $TRIM; do rm -rf "${work:?}/root/$path"; done
  tar -C "$work/root" -cf "$work/base.tar" .
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$work/base.tar" / >/dev/null
  buildah commit -q "$ctr" "$base" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

key=$( (cat deploy/Dockerfile .dockerignore pyproject.toml README.md "$0"; find src plugins -type f -name '*.py' -o -name '*.toml' \
  | sort | tr '\n' '\0' | xargs -0 cat; echo "$base") | sha256sum | cut -c1-12)
image=localhost/aibrix/runtime:$key
if ! buildah images -q "$image" >/dev/null 2>&1; then
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp -r pyproject.toml README.md src plugins .dockerignore "$ctx/"
  rm -rf "$ctx"/src/*.egg-info
  .venv/bin/python -m pip wheel -q --disable-pip-version-check --wheel-dir "$ctx/wheels" "$ctx[controller,gcs]"
  echo "build_image: buildah bud on $base" >&2
  buildah bud -q --isolation chroot --build-arg BASE="$base" --build-arg PACKAGE=aibrix \
    --build-arg PIP_ARGS="--no-index --find-links /src/wheels" -f deploy/Dockerfile -t "$image" "$ctx" >/dev/null
  # older builds of the image are of no further use: keep the store from growing with every change
  buildah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/aibrix/runtime:' | grep -v ":$key\$" \
    | xargs -r buildah rmi >/dev/null 2>&1 || true
fi
echo "$image"
