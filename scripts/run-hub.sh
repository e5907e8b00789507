#!/usr/bin/env bash
# Runs the hub locally: LocalStack with infra/ applied, then the local gateway serving the HTTP API
# (HTTP :8080, HTTPS :8443) with a demo device that sends one message into Kinesis. Ctrl-C stops
# the gateway; `localstack/stop.sh` stops LocalStack. Extra arguments go to `hub-local serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export AWS_EC2_METADATA_DISABLED=true

localstack/up.sh
scripts/build.sh
exec target/debug/hub-local serve --demo-device demo-device "$@"
