#!/usr/bin/env bash
# Make sure a Docker engine answers, and write how to reach it to .engine/env.
#
# 1. An engine that already answers (DOCKER_HOST or the default socket) is used as it is.
# 2. Otherwise, on Debian as root, install Debian's engine (docker.io, docker-compose,
#    debootstrap) and start dockerd in the background with its state under ENGINE_DIR.
# 3. debian:trixie-slim (Debian 13), the base of every image, is pulled; where no registry
#    is reachable it is built with debootstrap and imported under that same name, so the
#    Dockerfiles stay standard. The host's own release does not matter (bookworm works).
# 4. A probe container runs. Where it fails because setrlimit is forbidden, dockerd is
#    restarted with a runtime shim (runc-no-rlimits) that strips the rlimits.
# Idempotent: when everything is there it costs one `docker info` and one probe.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ENGINE_DIR=${CONVEYOR_ENGINE_DIR:-/var/lib/conveyor-engine}
SOCK="$ENGINE_DIR/docker.sock"
ENV_FILE="$root/.engine/env"
BASE_SUITE=trixie
BASE_IMAGE=debian:$BASE_SUITE-slim

say() { printf 'engine: %s\n' "$*" >&2; }
die() {
  printf 'engine: ERROR: %s\n' "$1" >&2
  [ $# -gt 1 ] && printf '  what to do: %s\n' "$2" >&2
  exit 1
}

answers() { DOCKER_HOST="$1" timeout 20 docker info >/dev/null 2>&1; }

write_env() {
  mkdir -p "$(dirname "$ENV_FILE")"
  if [ -n "$1" ]; then
    printf 'export DOCKER_HOST=%s\n' "$1" >"$ENV_FILE"
  else
    printf '# the default Docker engine answers\n' >"$ENV_FILE"
  fi
  printf 'export TESTCONTAINERS_RYUK_DISABLED=true\n' >>"$ENV_FILE"
}

install_packages() {
  local missing=()
  for pkg in docker.io docker-compose debootstrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and installing one needs root" \
    "start your Docker engine (or set DOCKER_HOST), or run 'sudo make engine'"
  command -v apt-get >/dev/null || die "no Docker engine answers and this is not a Debian system" \
    "install Docker (Engine or Desktop) and make sure 'docker info' works"
  say "installing ${missing[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_dockerd() {
  local runtime_args=()
  if [ "${1:-}" = shim ]; then
    runtime_args=(--add-runtime "conveyor-runc=$here/runc-no-rlimits" --default-runtime conveyor-runc)
  fi
  stop_dockerd
  mkdir -p "$ENGINE_DIR/data" "$ENGINE_DIR/exec"
  say "starting dockerd ${1:+with the rlimit shim }(log: $ENGINE_DIR/dockerd.log)"
  setsid nohup dockerd --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" \
    --pidfile "$ENGINE_DIR/docker.pid" -H "unix://$SOCK" "${runtime_args[@]}" \
    >>"$ENGINE_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    answers "unix://$SOCK" && return 0
    kill -0 $! 2>/dev/null || break
    sleep 1
  done
  tail -n 20 "$ENGINE_DIR/dockerd.log" >&2 || true
  die "dockerd did not come up" "read $ENGINE_DIR/dockerd.log; a stale $ENGINE_DIR/docker.pid can be removed"
}

stop_dockerd() {
  local pid
  pid=$(cat "$ENGINE_DIR/docker.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
}

ensure_base_image() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  say "pulling $BASE_IMAGE"
  timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  say "no registry reachable: building $BASE_IMAGE with debootstrap (about a minute)"
  local rootfs
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase "$BASE_SUITE" "$rootfs" >"$ENGINE_DIR/debootstrap.log" 2>&1 ||
    die "debootstrap failed" "read $ENGINE_DIR/debootstrap.log"
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

# Hosts behind a TLS-inspecting proxy trust an extra CA; builds (Maven, pip) need it too.
sync_build_certs() {
  local dest="$root/docker/certs"
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$crt" ] || continue
    cmp -s "$crt" "$dest/$(basename "$crt")" || cp -p "$crt" "$dest/"
  done
  return 0
}

probe() { docker run --rm --network none "$BASE_IMAGE" true 2>&1; }

main() {
  if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
    write_env "$DOCKER_HOST"; host="$DOCKER_HOST"
  elif [ -z "${DOCKER_HOST:-}" ] && answers ""; then
    write_env ""; host=""
  elif answers "unix://$SOCK"; then
    host="unix://$SOCK"; write_env "$host"
  else
    install_packages
    start_dockerd
    host="unix://$SOCK"; write_env "$host"
  fi
  export DOCKER_HOST="$host"
  [ -n "$host" ] || unset DOCKER_HOST
  mkdir -p "$ENGINE_DIR"
  ensure_base_image
  sync_build_certs
  local out
  if ! out=$(probe); then
    if grep -q rlimit <<<"$out" && [ "$host" = "unix://$SOCK" ]; then
      say "containers cannot set rlimits here; restarting dockerd with the shim"
      start_dockerd shim
      out=$(probe) || die "probe container still fails: $out" "read $ENGINE_DIR/dockerd.log"
    else
      die "a probe container fails: $out" "check 'docker run --rm $BASE_IMAGE true' by hand"
    fi
  fi
  say "ready${host:+ at $host}"
}

main "$@"
