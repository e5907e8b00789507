#!/usr/bin/env bash
# Runs the hub locally: LocalStack with infra/ applied, the local gateway serving the HTTP API
# (HTTP :8080, HTTPS :8443) and the web dashboard (/ui) with a demo device, and a simulated fleet (simulator/: chillers,
# elevators, engines, trucks, a faulty one of each) with the solution's rules, learned ones
# among them, that alert on and command the faulty devices. Ctrl-C stops the gateway and the
# fleet; `make stop` stops LocalStack.
#   scripts/run-hub.sh [--no-simulator] [hub-local serve arguments...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export AWS_EC2_METADATA_DISABLED=true

simulate=1
args=()
for arg in "$@"; do
  case "$arg" in
    --no-simulator) simulate=0 ;;
    *) args+=("$arg") ;;
  esac
done

localstack/up.sh
scripts/build.sh

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

target/debug/hub-local serve --demo-device demo-device ${args[@]+"${args[@]}"} &
pids+=($!)

# The fleet starts once the gateway answers.
for _ in $(seq 120); do
  curl -fsS --max-time 1 http://127.0.0.1:8080/openapi.json >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || exit 1
  sleep 0.5
done
echo "dashboard: http://127.0.0.1:8080/ui (sign in with the owner connection string above)"
if [ "$simulate" = 1 ]; then
  # A reading every 2 s, commands picked up within 5 s, desired properties within 30 s: the learned
  # rules warm up in 4 minutes and the faulty devices start drifting after 5.
  target/debug/hub-sim run \
    --connection-string "$(target/debug/hub-local connection-string --policy iothubowner)" \
    --url http://127.0.0.1:8080 --rules simulator/solution/rules \
    --interval 2 --c2d-poll 5 --twin-poll 30 --stats-every 30 &
  pids+=($!)
fi
wait "${pids[0]}"
