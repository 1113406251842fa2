#!/usr/bin/env bash
# Make this machine able to run the project's docker-compose.yml, from nothing, and say
# how (used by tests/test_compose.py; also by hand: `deploy/compose-engine.sh`).
#
# Prints, on its last lines, what to use:  ENGINE=<docker|podman>  COMPOSE=<command>
# Exit 0: ready. Exit 3: no engine can run here (the reason on the last line). Other:
# a step failed (its output says which).
#
# 1. A Docker engine that answers (`docker info`) is used as it is.
# 2. Otherwise, as root on Debian/Ubuntu: podman (rootful) with runc, iptables and a
#    containers.conf (CONTAINERS_CONF) whose default ulimits these machines can grant
#    (RLIMIT_NOFILE is capped at 20000 and conmon's RLIMIT_NPROC at 32768 here: with
#    podman's defaults every container fails to start), and podman-compose from PyPI
#    (Debian's 1.0.3 ignores --scale, passes ${VAR:-} through literally and mangles
#    exec-form health checks).
# 3. Base images without a registry: when the images the project names
#    (python:<version>-slim, redis:7.2-alpine) cannot be pulled, stand-ins are built
#    from a `debootstrap --variant=minbase` Debian (Python and Redis from Debian's
#    packages; the host's CA bundle and pip settings, for pip behind this machine's
#    TLS-intercepting proxy) and tagged with those names. They stay in the engine's
#    image store: a later run reuses them.
#
# Env: DAGRT_PYTHON_VERSION (the clients' major.minor; default: python3's).
set -euo pipefail

say() { echo "compose-engine: $*" >&2; }
unavailable() { echo "$*"; exit 3; }

here="$(cd "$(dirname "$0")" && pwd)"
state="${DAGRT_ENGINE_STATE:-/var/tmp/dagrt-compose-engine}"
python_version="${DAGRT_PYTHON_VERSION:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    if docker compose version >/dev/null 2>&1; then
        echo "ENGINE=docker"
        echo "COMPOSE=docker compose"
        exit 0
    fi
fi

if [ "$(id -u)" != 0 ]; then
    unavailable "no Docker engine answers, and podman needs root here to be installed and run rootful"
fi
if ! command -v apt-get >/dev/null 2>&1; then
    unavailable "no Docker engine answers, and apt-get is missing to install podman"
fi

missing=""
for tool in podman runc iptables debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    say "installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc iptables debootstrap netavark aardvark-dns slirp4netns uidmap \
        fuse-overlayfs >/dev/null
fi

mkdir -p "$state"
conf="$state/containers.conf"
cat > "$conf" <<'CONF'
# dagrt's compose test: limits these machines can grant, and what runs here
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$conf"

if ! podman info >/dev/null 2>&1; then
    podman info >&2 || true
    unavailable "podman is installed but does not run here (podman info fails: above)"
fi

# podman-compose from PyPI, in a venv of its own
venv="$state/compose-venv"
if [ ! -x "$venv/bin/podman-compose" ]; then
    say "installing podman-compose"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'podman-compose>=1.6,<1.7'
fi

# the base images the project names: pulled if a registry answers, else stand-ins
python_image="docker.io/library/python:${python_version}-slim"
redis_image="docker.io/library/redis:7.2-alpine"
have() { podman image exists "$1"; }
build_args=(--network=host --format=docker)

base="localhost/dagrt-base:bookworm"
need_base() {
    have "$base" && return 0
    say "building a Debian base image with debootstrap (once)"
    root="$state/rootfs"
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
    tar -C "$root" -c . | podman import - "$base" >/dev/null
    rm -rf "$root"
}

if ! have "$python_image" && ! podman pull -q "$python_image" >/dev/null 2>&1; then
    need_base
    say "building a stand-in for $python_image from Debian's python3"
    ctx="$state/python-context"
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
    cat > "$ctx/Containerfile" <<CF
FROM $base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends python3 python3-venv ca-certificates passwd findutils \
    && rm -rf /var/lib/apt/lists/*
COPY host-ca.crt /usr/local/share/ca-certificates/host-ca.crt
RUN update-ca-certificates >/dev/null 2>&1 || true; \
    python3 -m venv /usr/local/python && \
    ln -s /usr/local/python/bin/python /usr/local/bin/python && \
    ln -s /usr/local/python/bin/pip /usr/local/bin/pip
ENV PATH=/usr/local/python/bin:\$PATH PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CF
    podman build -q "${build_args[@]}" -t "$python_image" "$ctx" >/dev/null
    got="$(podman run --rm "$python_image" python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$got" != "$python_version" ]; then
        podman rmi -f "$python_image" >/dev/null
        unavailable "no image of Python $python_version can be had here: no registry answers, and Debian's python3 is $got"
    fi
fi

if ! have "$redis_image" && ! podman pull -q "$redis_image" >/dev/null 2>&1; then
    need_base
    say "building a stand-in for $redis_image from Debian's redis-server"
    ctx="$state/redis-context"
    rm -rf "$ctx" && mkdir -p "$ctx"
    cat > "$ctx/Containerfile" <<CF
FROM $base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data
WORKDIR /data
CMD ["redis-server"]
CF
    podman build -q "${build_args[@]}" -t "$redis_image" "$ctx" >/dev/null
fi

echo "CONTAINERS_CONF=$conf"
echo "BUILDAH_FORMAT=docker"
echo "ENGINE=podman"
echo "COMPOSE=$venv/bin/podman-compose --podman-build-args=--network=host"
