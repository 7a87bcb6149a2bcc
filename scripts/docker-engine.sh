#!/usr/bin/env bash
# Make a real Docker engine answer on this machine, idempotently.
#   scripts/docker-engine.sh [start]   install docker.io + debootstrap if missing, start dockerd if
#                                      `docker info` does not answer, wait until it does.
#   scripts/docker-engine.sh stop      stop the dockerd this script started (by its recorded PID).
# Environment:
#   NBDEPLOY_DOCKERD_DIR   where the PID file and log go (default /tmp/nbdeploy-dockerd)
#   NBDEPLOY_DOCKERD_WAIT  seconds to wait for the engine (default 60)
# The PID of a dockerd started here is written to $NBDEPLOY_DOCKERD_DIR/dockerd.pid and its log to
# $NBDEPLOY_DOCKERD_DIR/dockerd.log; nothing is written when an engine already answers.
# Prints "DOCKERD_PID=<pid>" (empty when the engine was already running) on success.
set -euo pipefail
DIR="${NBDEPLOY_DOCKERD_DIR:-/tmp/nbdeploy-dockerd}"
WAIT="${NBDEPLOY_DOCKERD_WAIT:-60}"
PIDFILE="$DIR/dockerd.pid"; LOG="$DIR/dockerd.log"
export DOCKER_BUILDKIT=0
# Debian's client matches Debian's engine; the docker on PATH may be newer and lack buildx.
DOCKER=/usr/bin/docker

say() { echo "docker-engine: $*" >&2; }

answers() { [ -x "$DOCKER" ] && timeout 10 "$DOCKER" info >/dev/null 2>&1; }

stop_engine() {
  [ -f "$PIDFILE" ] || { say "no PID file at $PIDFILE: nothing started here to stop"; return 0; }
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && { say "dockerd $pid did not stop in 30 s; sending KILL"; kill -9 "$pid" || true; }
  fi
  rm -f "$PIDFILE"; say "stopped dockerd $pid"
}

install_packages() {
  missing=()
  command -v dockerd >/dev/null 2>&1 && [ -x /usr/bin/docker ] || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || { say "need root to apt-get install ${missing[*]}; install them or start an engine yourself"; exit 2; }
  command -v apt-get >/dev/null 2>&1 || { say "no apt-get here: install ${missing[*]} yourself"; exit 2; }
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" iptables ca-certificates >/dev/null
}

already() {  # the engine answers: report the dockerd we started earlier, if it is that one
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "engine already answers (dockerd $(cat "$PIDFILE") started here)"; echo "DOCKERD_PID=$(cat "$PIDFILE")"
  else say "engine already answers"; echo "DOCKERD_PID="; fi
}

start_engine() {
  mkdir -p "$DIR"
  if answers; then already; return 0; fi
  install_packages
  if answers; then already; return 0; fi
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "dockerd $(cat "$PIDFILE") started earlier is still coming up; waiting"
  else
    [ "$(id -u)" = 0 ] || { say "need root to start dockerd; ask an admin or point DOCKER_HOST at an engine"; exit 2; }
    # Started as its own process (not via a wrapper shell) so the recorded PID is dockerd itself.
    nohup dockerd >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    say "started dockerd $(cat "$PIDFILE"), log $LOG"
  fi
  for _ in $(seq 1 "$WAIT"); do
    if answers; then echo "DOCKERD_PID=$(cat "$PIDFILE")"; return 0; fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { say "dockerd exited; last lines of $LOG:"; tail -20 "$LOG" >&2; rm -f "$PIDFILE"; exit 1; }
    sleep 1
  done
  say "dockerd did not answer 'docker info' within ${WAIT}s; last lines of $LOG:"; tail -20 "$LOG" >&2
  exit 1
}

case "${1:-start}" in
  start) start_engine ;;
  stop) stop_engine ;;
  *) say "usage: $0 [start|stop]"; exit 2 ;;
esac
