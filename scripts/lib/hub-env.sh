# Writes what the local tools and the tests read about an applied environment, from its
# Terraform outputs. Sourced; call write_hub_env <terraform wrapper> <endpoint> <directory>:
#   <directory>/hub.env             endpoints, credentials, resource names (dotenv)
#   <directory>/hub-settings.json   output `local_emulation`: each function's environment,
#                                   the event source mappings and the schedule
write_hub_env() {
  local terraform=$1 endpoint=$2 dir=$3 outputs
  mkdir -p "$dir"
  outputs=$("$terraform" output -json)
  # Terraform leaves null outputs out of `output -json`: those print as empty.
  output() { python3 -c 'import json, sys; v = json.load(sys.stdin).get(sys.argv[1], {}).get("value"); print("" if v is None else (v if isinstance(v, str) else json.dumps(v)))' "$1" <<<"$outputs"; }
  output local_emulation >"$dir/hub-settings.json"
  cat >"$dir/hub.env" <<ENV
# Written from the Terraform outputs of this environment's apply. Do not edit.
AWS_ENDPOINT_URL=$endpoint
AWS_REGION=$(output region)
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_EC2_METADATA_DISABLED=true
HUB_LOCAL_SETTINGS=$dir/hub-settings.json
HUB_API_URL=$(output api_url)
HUB_HOST_NAME=$(output hub_host_name)
HUB_REGISTRY_TABLE=$(output registry_table_name)
HUB_POLICIES_TABLE=$(output policies_table_name)
HUB_TWINS_TABLE=$(output twins_table_name)
HUB_TWIN_TAGS_TABLE=$(output twin_tags_table_name)
HUB_METHOD_CALLS_TABLE=$(output method_calls_table_name)
HUB_JOBS_TABLE=$(output jobs_table_name)
HUB_JOB_WORK_QUEUE_URL=$(output job_work_queue_url)
HUB_REGISTRY_EVENTS_QUEUE_URL=$(output registry_events_queue_url)
HUB_TELEMETRY_STREAM=$(output telemetry_stream_name)
HUB_COMMANDS_TABLE=$(output commands_table_name)
HUB_FEEDBACK_QUEUE_URL=$(output feedback_queue_url)
HUB_C2D_DEAD_LETTER_QUEUE_URL=$(output c2d_dead_letter_queue_url)
HUB_COMMAND_REQUESTS_QUEUE_URL=$(output command_requests_queue_url)
HUB_COMMAND_REQUESTS_DLQ_URL=$(output command_requests_dead_letter_queue_url)
HUB_ANALYTICS_TABLE=$(output analytics_table_name)
HUB_ALERTS_TABLE=$(output alerts_table_name)
HUB_RULES_TABLE=$(output rules_table_name)
HUB_ALERTS_QUEUE_URL=$(output alerts_queue_url)
HUB_ANALYTICS_DLQ_URL=$(output analytics_dead_letter_queue_url)
HUB_ANALYTICS_FAILURES_QUEUE_URL=$(output analytics_failed_batches_queue_url)
HUB_SWEEP_FAILURES_QUEUE_URL=$(output sweep_failures_queue_url)
HUB_ROUTING_DLQ_URL=$(output routing_dead_letter_queue_url)
HUB_ARCHIVE_BUCKET=$(output archive_bucket)
ENV
}
