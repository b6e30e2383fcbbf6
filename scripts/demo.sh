#!/usr/bin/env bash
# Runs pyrestate (SQLite in ./pyrestate-data) with the demo service registered.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
INGRESS=${PYRESTATE_INGRESS_BIND:-127.0.0.1:8080}
ADMIN=${PYRESTATE_ADMIN_BIND:-127.0.0.1:9070}
SERVICE_PORT=${DEMO_SERVICE_PORT:-9080}
.venv/bin/python -m pyrestate server --ingress-bind "$INGRESS" --admin-bind "$ADMIN" &
server=$!
.venv/bin/hypercorn examples.demo:app --bind "127.0.0.1:$SERVICE_PORT" --log-level warning &
service=$!
trap 'kill $service $server 2>/dev/null; wait' EXIT INT TERM
for _ in $(seq 100); do
  curl -sf "http://$ADMIN/health" >/dev/null && curl -sf "http://127.0.0.1:$SERVICE_PORT/discover" \
    -H 'accept: application/vnd.restate.endpointmanifest.v3+json' >/dev/null && break
  sleep 0.1
done
curl -sf "http://$ADMIN/deployments" -H 'content-type: application/json' \
  -d "{\"uri\": \"http://127.0.0.1:$SERVICE_PORT\"}" >/dev/null
cat <<MSG

pyrestate is running: ingress http://$INGRESS, admin http://$ADMIN
The demo service is registered. Try:

  curl http://$INGRESS/Greeter/greet -H 'content-type: application/json' -d '"World"'
  curl -X POST http://$INGRESS/Visits/Ada/visit

Ctrl-C stops everything (data stays in ./pyrestate-data).
MSG
wait $server
