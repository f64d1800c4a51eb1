#!/usr/bin/env bash
# Build the project's container images with nothing pulled from an image registry.
#
#   scripts/build-images.sh bridge   # the project's Dockerfile on the local Python base
#   scripts/build-images.sh kafka    # single-node Apache Kafka (KRaft) for BRIDGE_TEST_KAFKA=docker
#   scripts/build-images.sh all      # both
#
# Every image starts from a base made here with debootstrap from Debian's own packages and
# imported with `docker import`:
#   python base  python3, python3-venv, python-is-python3, ca-certificates (Debian 12: 3.11)
#   jre base     openjdk-17-jre-headless, ca-certificates
# Each base carries this machine's CA bundle, so that pip inside the build trusts the package
# index that this machine trusts. A base's root file system is cached as a tarball under
# ${XDG_CACHE_HOME:-~/.cache}/kafka-eventbridge/images/, keyed by what goes into it, and is
# imported only when the engine does not hold it yet: after the first run a build costs the
# image's own layers only.
#
# The bridge image is the repository's Dockerfile, unchanged, built with
# --build-arg PYTHON_IMAGE=<python base>. The Kafka image is testing/docker/kafka/, with the
# jars that the test suite fetches with Maven (kafka_eventbridge_testing.brokers).
# Builds use the host network (the engine's bridge is off) and the engine's built-in
# Dockerfile frontend (BuildKit, no frontend image).
#
# Environment:
#   BRIDGE_IMAGE         tag of the bridge image (default kafka-eventbridge:local)
#   BRIDGE_IMAGE_BASE    local (default: the debootstrap base) or official (the Dockerfile's
#                        pinned python:3.11-slim-bookworm; needs a registry to pull from)
#   BRIDGE_IMAGE_SOURCE  the image's source label when origin's URL is not one
#   BRIDGE_TEST_KAFKA_IMAGE  tag of the Kafka image (default: the fixture's default)
#   BRIDGE_TEST_KAFKA_VERSION  Kafka version of that image (default: the fixture's default)
#   DEBIAN_MIRROR        Debian mirror for debootstrap (default: this machine's apt source)
#   CA_BUNDLE            CA bundle copied into the bases (default: SSL_CERT_FILE, else Debian's)
#   PYTHON               interpreter with the test package installed (default .venv/bin/python)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

readonly suite="bookworm"
readonly python_base="kafka-eventbridge-base/python:3.11-${suite}"
readonly jre_base="kafka-eventbridge-base/jre:17-${suite}"
readonly python_packages="python3,python3-venv,python-is-python3,ca-certificates"
readonly jre_packages="openjdk-17-jre-headless,ca-certificates"
cache="${XDG_CACHE_HOME:-${HOME}/.cache}/kafka-eventbridge"
python="${PYTHON:-${repo_root}/.venv/bin/python}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }

# The first Debian archive this machine's apt reads from (deb822 or one-line format).
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
    printf '%s\n' "${DEBIAN_MIRROR}"
    return
  fi
  local uri
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')"
  [[ -n "${uri}" ]] || uri="$(awk '/^deb / && $2 !~ /security/ {print $2; exit}' \
    /etc/apt/sources.list 2>/dev/null || true)"
  [[ -n "${uri}" ]] || die "no Debian mirror found in apt's sources; set DEBIAN_MIRROR"
  printf '%s\n' "${uri}"
}

ca_bundle() {
  local bundle="${CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
  [[ -s "${bundle}" ]] || die "CA bundle ${bundle} is missing or empty; set CA_BUNDLE"
  printf '%s\n' "${bundle}"
}

# debootstrap a minimal root file system with $packages, add the CA bundle, trim what an
# image never reads (apt lists and caches, docs, man pages), and write it as a tarball.
make_rootfs() {
  local packages="$1" tarball="$2" bundle="$3" work
  command -v debootstrap >/dev/null || {
    [[ "$(id -u)" == 0 ]] || die "debootstrap is missing and installing it needs root"
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  work="$(mktemp -d "${cache}/images/rootfs.XXXXXX")"
  log "debootstrap ${suite} with ${packages} (a few minutes, once)"
  mkdir -p "${cache}/images/debs"
  if ! debootstrap --variant=minbase --include="${packages}" \
      --cache-dir="${cache}/images/debs" "${suite}" "${work}/root" "$(debian_mirror)" \
      >"${work}/debootstrap.log" 2>&1; then
    tail -n 20 "${work}/debootstrap.log" >&2
    rm -rf "${work}"
    die "debootstrap failed (log above)"
  fi
  cp "${bundle}" "${work}/root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "${work}/root/var/lib/apt/lists/"* "${work}/root/var/cache/apt/"*.bin \
    "${work}/root/var/cache/apt/archives/"*.deb "${work}/root/usr/share/doc/"* \
    "${work}/root/usr/share/man/"* "${work}/root/var/log/"*.log
  tar --numeric-owner -C "${work}/root" -cf "${tarball}.partial" .
  mv "${tarball}.partial" "${tarball}"
  rm -rf "${work}"
}

# Import the base image $tag (a rootfs of $packages) unless the engine has it already.
ensure_base() {
  local tag="$1" packages="$2" bundle key tarball
  bundle="$(ca_bundle)"
  key="$(printf '%s\n' "${suite}" "${packages}" "$(sha256sum <"${bundle}")" \
    | sha256sum | cut -c1-12)"
  local full_tag="${tag}-${key}"
  if docker image inspect "${full_tag}" >/dev/null 2>&1; then
    printf '%s\n' "${full_tag}"
    return
  fi
  mkdir -p "${cache}/images"
  tarball="${cache}/images/${tag//[\/:]/-}-${key}.tar"
  [[ -s "${tarball}" ]] || make_rootfs "${packages}" "${tarball}" "${bundle}" >&2
  log "importing ${full_tag}"
  docker import --change 'CMD ["/bin/sh"]' "${tarball}" "${full_tag}" >/dev/null
  printf '%s\n' "${full_tag}"
}

# `docker build` with BuildKit. A client with the buildx plugin builds through it; without
# the plugin, newer clients refuse DOCKER_BUILDKIT=1, so the client that Debian's docker.io
# ships (the engine's own version, whose builder is built in) is used instead.
docker_build() {
  if docker buildx version >/dev/null 2>&1; then
    docker buildx build --load "$@"
    return
  fi
  local client
  client="$(dpkg-query -L docker.io 2>/dev/null | grep -m1 '/bin/docker$' || true)"
  [[ -n "${client}" ]] || die "no BuildKit-capable docker client (install buildx, or Debian's docker.io)"
  DOCKER_BUILDKIT=1 "${client}" build "$@"
}

# The repository's public URL for the image's source label: origin's, when it is a URL.
source_url() {
  local url
  url="$(git config --get remote.origin.url 2>/dev/null || true)"
  case "${url}" in
    https://*) printf '%s\n' "${url%.git}" ;;
    git@*:*) url="${url#git@}"; printf 'https://%s\n' "${url/://}" | sed 's/\.git$//' ;;
    *) printf '%s\n' "${BRIDGE_IMAGE_SOURCE:-}" ;;
  esac
}

build_bridge() {
  local base image="${BRIDGE_IMAGE:-kafka-eventbridge:local}" base_arg=()
  if [[ "${BRIDGE_IMAGE_BASE:-local}" == official ]]; then
    base="the Dockerfile's default base (pulled)"
  else
    base="$(ensure_base "${python_base}" "${python_packages}")"
    base_arg=(--build-arg "PYTHON_IMAGE=${base}")
  fi
  log "building ${image} from the Dockerfile on ${base}"
  docker_build --network host "${base_arg[@]}" \
    --build-arg "REVISION=$(git rev-parse HEAD)" \
    --build-arg "SOURCE=$(source_url)" \
    --tag "${image}" .
  log "${image}: $(docker image inspect --format '{{.Size}}' "${image}" \
    | awk '{printf "%.1f MB", $1 / 1e6}')"
}

build_kafka() {
  local base image version libs context
  [[ -x "${python}" ]] || die "${python} is missing; run make install"
  # The version and the tag the fixture will ask for (both follow BRIDGE_TEST_KAFKA_VERSION).
  version="$("${python}" -c 'from kafka_eventbridge_testing.brokers import BrokerOptions as o; print(o().kafka_version)')"
  image="$("${python}" -c 'from kafka_eventbridge_testing.brokers import docker_image; print(docker_image())')"
  base="$(ensure_base "${jre_base}" "${jre_packages}")"
  libs="$("${python}" -c "from kafka_eventbridge_testing.brokers import fetch_apache_kafka as f; print(f('${version}'))")"
  context="$(mktemp -d "${TMPDIR:-/tmp}/kafka-image.XXXXXX")"
  # shellcheck disable=SC2064 # the directory is known now, and gone when this returns
  trap "rm -rf '${context}'" RETURN
  cp testing/docker/kafka/* "${context}/"
  cp -al "${libs}" "${context}/libs" 2>/dev/null || cp -R "${libs}" "${context}/libs"
  log "building ${image} (Apache Kafka ${version}) on ${base}"
  docker_build --network host \
    --build-arg "JRE_IMAGE=${base}" --build-arg "KAFKA_VERSION=${version}" \
    --tag "${image}" "${context}"
}

main() {
  local what="${1:-}"
  case "${what}" in
    bridge | kafka | all) ;;
    *) die "usage: scripts/build-images.sh bridge|kafka|all" ;;
  esac
  bash scripts/docker-engine.sh
  [[ "${what}" == kafka ]] || build_bridge
  [[ "${what}" == bridge ]] || build_kafka
}

main "$@"
