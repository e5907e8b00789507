# Settings for applying this configuration to MiniStack (ministack/terraform.sh passes these,
# with aws_endpoint_url and lambda_artifacts_dir). Everything is deployed as for AWS, the functions included; the only
# differences are the packages (this machine's architecture, this checkout's debug build) and
# what a throwaway environment wants (no deletion protection, short log retention). The host
# name is derived from the API endpoint, as in AWS.
deploy_compute      = true
lambda_architecture = "x86_64"
deletion_protection = false
log_retention_days  = 1
# MiniStack changes a function's resource policy without a lock: concurrent AddPermission calls
# on one function lose statements, and the provider waits 5 minutes for each lost one.
api_invoke_permission_per_route = false
# The dashboard draws raw points for charts' latest stretch locally (off by default in AWS: cost).
analytics_recent_readings = 20
# The cold path, deployed as in AWS (without the Athena table: MiniStack has no Glue).
archive = { enabled = true, batch_seconds = 5, batch_records = 500, athena = false }
routes  = [{ name = "archive", endpoint = "archive" }]
# Made fresh: every device is in the id index from the start.
registry_id_index_complete = true
