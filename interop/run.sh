#!/usr/bin/env bash
# Interoperability run: builds authority-host, starts it with a copy of
# examples/authority.yaml on free local ports in a temporary working
# directory, runs the Node.js checks (interop/node/run.mjs, standard client
# libraries oauth4webapi and openid-client) against it and stops it again.
# Exit status: that of the checks (non-zero on any failure).
#
#   bash interop/run.sh
#
# Environment (optional): INTEROP_HTTP_PORT (default 18080),
# INTEROP_HTTPS_PORT (default 18443), INTEROP_KEEP=1 keeps the temp dir.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HTTP_PORT="${INTEROP_HTTP_PORT:-18080}"
HTTPS_PORT="${INTEROP_HTTPS_PORT:-18443}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/authority-interop.XXXXXX")"
SERVER_PID=""

log() { printf 'interop/run.sh: %s\n' "$*" >&2; }

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f "$WORK/server.log" ]]; then
    log "server log (last 40 lines):"
    tail -n 40 "$WORK/server.log" >&2 || true
  fi
  if [[ "${INTEROP_KEEP:-}" == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT

for p in "$HTTP_PORT" "$HTTPS_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    log "port $p on 127.0.0.1 is already in use (set INTEROP_HTTP_PORT / INTEROP_HTTPS_PORT)"
    exit 2
  fi
done

log "building authority-host"
(cd "$ROOT" && go build -o "$WORK/authority-host" ./cmd/host)

sed -e "s/127\.0\.0\.1:8080/127.0.0.1:${HTTP_PORT}/g" \
    -e "s/:8443/:${HTTPS_PORT}/g" \
    "$ROOT/examples/authority.yaml" > "$WORK/authority.yaml"
if ! grep -q "127.0.0.1:${HTTP_PORT}" "$WORK/authority.yaml" || ! grep -q ":${HTTPS_PORT}" "$WORK/authority.yaml"; then
  log "could not rewrite the listen ports in examples/authority.yaml"
  exit 2
fi

log "starting authority-host in $WORK (http :$HTTP_PORT, https :$HTTPS_PORT)"
(cd "$WORK" && exec ./authority-host serve --config authority.yaml) >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

ready=""
for _ in $(seq 1 150); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "authority-host exited before it was ready"
    exit 1
  fi
  if curl -fsS "http://127.0.0.1:${HTTP_PORT}/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
if [[ -z "$ready" ]]; then
  log "authority-host not ready after 30s"
  exit 1
fi

cd "$ROOT/interop/node"
if [[ -f package-lock.json ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >&2
else
  log "npm install (no package-lock.json)"
  npm install --no-audit --no-fund --loglevel=error >&2
fi

set +e
AUTHORITY_HTTP_PORT="$HTTP_PORT" AUTHORITY_DIR="$WORK" node run.mjs
rc=$?
set -e
exit $rc
