#!/usr/bin/env bash
# Plugin tenancy at full size (issue 17): 1,000 tenants with three plugins
# each, Zipf-skewed /token traffic, with and without the plugins; prints
# time to ready (cold and warm compilation cache), RSS, live instances,
# instantiations per second and /token p50/p99 (BenchmarkTenantsAtScale in
# host/app). TENANTS and REQUESTS override the size.
set -euo pipefail
cd "$(dirname "$0")/.."
AUTHORITY_BENCH_TENANTS="${TENANTS:-1000}" go test ./host/app -run '^$' -bench TenantsAtScale \
  -benchtime "${REQUESTS:-60000}x" -timeout 30m
