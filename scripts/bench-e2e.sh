#!/usr/bin/env bash
# End-to-end token benchmark (make bench-e2e): the server on core 0, the
# load generator (cmd/loadgen: live ES256 DPoP proofs, nonces followed,
# 16 connections) on core 1, one row per configuration:
#   (1) memory stores                      examples/authority.yaml, demo-dpop
#   (2) (1) + the SEC plugins on demo-dpop (sec3 rate limit, sec5 rules)
#   (3) PostgreSQL tokens + Redis DPoP state
#   (4) the peer: node-oidc-provider (bench/peer, installed here with npm ci
#       into the git-ignored bench/peer/node_modules) serving the same flow
# plus the ES256 sign + verify floor measured on core 0. Prints the table
# and, with WRITE=1, puts it dated into docs/benchmarks.md between the
# bench-e2e markers. DURATION (default 20s) and CONNS (16) tune the run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20s}
CONNS=${CONNS:-16}
WORK=var/bench-e2e
mkdir -p "$WORK"
PG_DSN=${AUTHORITY_TEST_POSTGRES_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
REDIS_ADDR=${AUTHORITY_TEST_REDIS_ADDR:-127.0.0.1:6379}

make -s build >/dev/null
go build -o bin/loadgen ./cmd/loadgen
[ -d bench/peer/node_modules/oidc-provider ] || (cd bench/peer && npm ci --no-audit --no-fund >/dev/null)

# (2): SEC3 with a limit the load never reaches and SEC5 requiring DPoP for
# demo-api, pinned as the demo tenants pin them.
sec3_sha=$(grep -A2 'name: sec3' examples/authority.yaml | sed -n 's/.*sha256: //p' | head -1)
sec5_sha=$(grep -A2 'name: sec5' examples/authority.yaml | sed -n 's/.*sha256: //p' | head -1)
python3 - "$WORK" "$sec3_sha" "$sec5_sha" "$PG_DSN" "$REDIS_ADDR" <<'PY'
import sys
work, sec3, sec5, dsn, redis = sys.argv[1:]
base = open("examples/authority.yaml").read()
# Each row has its own audit file and listeners as in the example.
plugins = f"""    plugins:
      - name: sec3
        path: bin/plugins/sec3.wasm
        sha256: {sec3}
        hooks: [token, events]
        grants: [config, counters, pseudonymize, audit]
        eventOutcomes: [failure]
        config:
          token: {{permitLimit: 100000000, window: 1m}}
          lockout: {{maxFailures: 3, window: 5m, lockoutDuration: 1m}}
      - name: sec5
        path: bin/plugins/sec5.wasm
        sha256: {sec5}
        hooks: [token, introspect, fresh-auth, events]
        grants: [config, clock, counters, audit]
        config:
          audiences:
            - {{audience: demo-api, require: [dpop]}}
          dpop: {{algorithms: [ES256]}}
          alerts: {{window: 10m, buckets: 10, nonceMissRatio: 0.05, mtlsMismatches: 0}}

"""
mark = "  - id: demo-mtls\n"
assert mark in base
def audit(doc, row):
    return doc.replace("file: var/audit/audit.jsonl", f"file: {work}/audit-{row}.jsonl")
open(f"{work}/memory.yaml", "w").write(audit(base, "memory"))
open(f"{work}/plugins.yaml", "w").write(audit(base.replace(mark, plugins + mark, 1), "plugins"))
pg = base.replace("  tokens: memory ", f"  postgres: {{dsn: \"{dsn}\"}}\n  redis: {{addr: \"{redis}\"}}\n  tokens: postgres ", 1)
pg = pg.replace("        store: memory ", "        store: redis ", 1)
assert pg.count("tokens: postgres") == 1 and "store: redis" in pg
open(f"{work}/pgredis.yaml", "w").write(audit(pg, "pgredis"))
PY

serve_and_load() { # label config|peer
  local label=$1 cfg=$2 pid url=http://127.0.0.1:8080 ready=/readyz
  if [ "$cfg" = peer ]; then
    url=http://127.0.0.1:8090 ready=/.well-known/openid-configuration
    taskset -c 0 node bench/peer/server.mjs 8090 2>"$WORK/$label.log" &
  else
    taskset -c 0 bin/authority-host serve --config "$cfg" 2>"$WORK/$label.log" &
  fi
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null "$url$ready" && break
    kill -0 "$pid" 2>/dev/null || { echo "server for $label exited; see $WORK/$label.log" >&2; exit 1; }
    sleep 0.2
  done
  taskset -c 1 bin/loadgen -url "$url" -label "$label" -conns "$CONNS" -duration "$DURATION" -pid "$pid" | tail -1 >"$WORK/$label.json" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  cat "$WORK/$label.json"
}

taskset -c 0 bin/loadgen -floor | tail -1 >"$WORK/floor.json"
serve_and_load memory "$WORK/memory.yaml"
serve_and_load plugins "$WORK/plugins.yaml"
serve_and_load pgredis "$WORK/pgredis.yaml"
serve_and_load peer peer

python3 - "$WORK" "${WRITE:-0}" "$DURATION" "$CONNS" <<'PY'
import json, sys, datetime, re
work, write, duration, conns = sys.argv[1:]
floor = json.load(open(f"{work}/floor.json"))["floor_us"]
rows = [("(1) memory stores", "memory"), ("(2) (1) + SEC3 and SEC5", "plugins"), ("(3) PostgreSQL + Redis", "pgredis"),
        ("(4) node-oidc-provider 9.13 (in-memory adapter)", "peer")]
res = {k: json.load(open(f"{work}/{k}.json")) for _, k in rows}
out = [f"Run {datetime.date.today()} by `make bench-e2e` (DURATION={duration}, {conns} connections; server on core 0, load on core 1; "
       f"ES256 sign + verify floor {floor:.0f} µs on core 0).", "",
       "| configuration | tokens/s | p50 | p99 | errors | server CPU per token | × floor |", "|---|---|---|---|---|---|---|"]
for name, k in rows:
    r = res[k]
    cpu = r["server_cpu_ms_per_1000"]  # ms per 1,000 tokens = µs per token
    out.append(f"| {name} | {r['tokens_per_s']:.0f} | {r['p50_us']/1000:.2f} ms | {r['p99_us']/1000:.2f} ms | {r['errors']} | {cpu:.0f} µs | {cpu/floor:.2f} |")
tps = {k: r["tokens_per_s"] for k, r in res.items()}
out += ["", f"Ratios: (1)/(4) = {tps['memory']/tps['peer']:.2f}, (3)/(4) = {tps['pgredis']/tps['peer']:.2f}, "
        f"(2)/(1) = {tps['plugins']/tps['memory']:.2f}."]
table = "\n".join(out)
print(table)
for k, r in res.items():
    if r.get("first_error"):
        print(f"{k}: first error: {r['first_error'][:200]}")
if write == "1":
    p = "docs/benchmarks.md"
    doc = open(p).read()
    start, end = "<!-- bench-e2e:start -->", "<!-- bench-e2e:end -->"
    block = f"{start}\n{table}\n{end}"
    if start in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n## End to end (`make bench-e2e`)\n\n" + block + "\n"
    open(p, "w").write(doc)
PY
