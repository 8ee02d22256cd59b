# SPDX-License-Identifier: Apache-2.0
# Sourced by the docker tests: start and stop a private dockerd (Debian's docker.io, 20.10).
#   dockerd_start DIR DRIVER   -> sets DOCKER_HOST, DOCKERD_PID, DOCKERD_ROOT; returns 77 with
#                                 a reason on stderr when dockerd cannot start here
#   dockerd_stop               -> stops it by pid (and only it)
# Everything is private: --data-root, --exec-root, --pidfile, a unix socket under DIR, no
# iptables, no bridge, no network access.

dockerd_start() {
  local dir=$1 driver=$2
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    echo "SKIP: dockerd/docker not installed (Debian: apt-get install docker.io)" >&2
    return 77
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "SKIP: dockerd needs root (running as uid $(id -u))" >&2
    return 77
  fi
  mkdir -p "$dir"
  # unix socket paths are limited to 107 bytes: keep the exec root and socket short.
  DOCKERD_RUN=$(mktemp -d /tmp/rld.XXXXXX)
  DOCKERD_ROOT=$dir/root
  mkdir -p "$DOCKERD_ROOT"
  export DOCKER_HOST=unix://$DOCKERD_RUN/d.sock
  export DOCKER_CONFIG=$DOCKERD_RUN/cfg
  dockerd --data-root "$DOCKERD_ROOT" --exec-root "$DOCKERD_RUN/x" --pidfile "$DOCKERD_RUN/d.pid" \
    --host "$DOCKER_HOST" --iptables=false --ip6tables=false --bridge=none --ip-forward=false \
    --ip-masq=false --storage-driver "$driver" --userland-proxy=false \
    --containerd-namespace rolayer-test --containerd-plugins-namespace rolayer-test-p \
    >"$dir/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  local i
  for i in $(seq 1 300); do
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      echo "SKIP: dockerd ($driver) exited at start; its log:" >&2
      tail -n 15 "$dir/dockerd.log" >&2
      DOCKERD_PID=
      return 77
    fi
    if docker version >/dev/null 2>&1; then
      local got
      got=$(docker info --format '{{.Driver}}' 2>/dev/null)
      if [ "$got" != "$driver" ]; then
        echo "SKIP: dockerd runs the $got driver, not $driver" >&2
        dockerd_stop
        return 77
      fi
      return 0
    fi
    sleep 0.1
  done
  echo "SKIP: dockerd ($driver) did not answer on its socket within 30 s; its log:" >&2
  tail -n 15 "$dir/dockerd.log" >&2
  dockerd_stop
  return 77
}

dockerd_stop() {
  if [ -n "${DOCKERD_PID:-}" ]; then
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 150); do
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=
  fi
  if [ -n "${DOCKERD_RUN:-}" ]; then rm -rf "$DOCKERD_RUN"; fi
  DOCKERD_RUN=
}
