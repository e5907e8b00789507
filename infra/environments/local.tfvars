# Settings for applying this configuration to LocalStack (localstack/terraform.sh passes these,
# with aws_endpoint_url).
aws_endpoint_url    = "http://127.0.0.1:4566"
deploy_compute      = false
hub_host_name       = "localhost"
deletion_protection = false
log_retention_days  = 1
# The dashboard draws raw points for charts' latest stretch locally (off by default in AWS: cost).
analytics_recent_readings = 20
# The cold path: every message into the archive, in batches of at most 5 s (docs/routing.md).
archive = { enabled = true, batch_seconds = 5, batch_records = 500, athena = false }
routes  = [{ name = "archive", endpoint = "archive" }]
# Made fresh: every device is in the id index from the start.
registry_id_index_complete = true
