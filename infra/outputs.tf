output "api_url" {
  description = "Base URL of the HTTP API (null when deploy_compute is false)."
  value       = try(module.http_api[0].api_endpoint, null)
}

output "hub_host_name" {
  description = "Host name for SAS tokens (`sr`) and connection strings."
  value       = local.hub_host_name
}

output "region" {
  description = "Region the hub is deployed in."
  value       = data.aws_region.current.name
}

output "registry_table_name" {
  description = "DynamoDB table of device identities."
  value       = aws_dynamodb_table.registry.name
}

output "policies_table_name" {
  description = "DynamoDB table of shared access policies and their keys."
  value       = aws_dynamodb_table.policies.name
}

output "twins_table_name" {
  description = "DynamoDB table of device twins."
  value       = aws_dynamodb_table.twins.name
}

output "twin_tags_table_name" {
  description = "DynamoDB table of the twin tag index (entries per scalar tag leaf, for twin queries)."
  value       = aws_dynamodb_table.twin_tags.name
}

output "jobs_table_name" {
  description = "DynamoDB table of jobs, their chunks and per-device results."
  value       = aws_dynamodb_table.jobs.name
}

output "job_work_queue_url" {
  description = "SQS queue of job work items the registry function consumes."
  value       = module.job_work.url
}

output "method_calls_table_name" {
  description = "DynamoDB table of direct method calls while they are waited for."
  value       = aws_dynamodb_table.method_calls.name
}

output "registry_events_queue_url" {
  description = "SQS queue of device lifecycle events (createDeviceIdentity, deleteDeviceIdentity)."
  value       = module.registry_events.url
}

output "telemetry_stream_name" {
  description = "Kinesis stream receiving device telemetry (partition key = device id)."
  value       = aws_kinesis_stream.telemetry.name
}

output "telemetry_stream_arn" {
  description = "ARN of the telemetry stream, for consumers."
  value       = aws_kinesis_stream.telemetry.arn
}

output "commands_table_name" {
  description = "DynamoDB table of cloud-to-device message queues."
  value       = aws_dynamodb_table.commands.name
}

output "feedback_queue_url" {
  description = "SQS queue of delivery feedback (read through GET /messages/serviceBound/feedback)."
  value       = module.feedback.url
}

output "c2d_dead_letter_queue_url" {
  description = "SQS queue receiving cloud-to-device messages that exceeded the delivery count."
  value       = module.c2d_dead_letter.url
}

output "command_requests_queue_url" {
  description = "SQS queue where asynchronous producers put command requests."
  value       = module.command_requests.url
}

output "command_requests_dead_letter_queue_url" {
  description = "SQS queue receiving command requests that cannot be processed."
  value       = module.command_requests_dead_letter.url
}

output "analytics_table_name" {
  description = "DynamoDB table of window aggregates, device states and shard checkpoints."
  value       = aws_dynamodb_table.analytics.name
}

output "alerts_table_name" {
  description = "DynamoDB table of alerts (one per rule and device)."
  value       = aws_dynamodb_table.alerts.name
}

output "rules_table_name" {
  description = "DynamoDB table of analytics rules."
  value       = aws_dynamodb_table.rules.name
}

output "alerts_queue_url" {
  description = "SQS queue of alert events (raised, cleared) for integrations."
  value       = module.alerts_queue.url
}

output "analytics_dead_letter_queue_url" {
  description = "SQS queue of telemetry records the analytics function cannot process, with the reason."
  value       = module.analytics_dead_letter.url
}

output "analytics_failed_batches_queue_url" {
  description = "SQS queue where the event source mapping reports batches it gave up on."
  value       = module.analytics_failed_batches.url
}

output "function_names" {
  description = "Lambda function names by role (created only when deploy_compute is true)."
  value = {
    authorize = module.authorize.function_name
    registry  = module.registry.function_name
    ingest    = module.ingest.function_name
    commands  = module.commands.function_name
    analytics = module.analytics.function_name
    dashboard = module.dashboard.function_name
  }
}

output "function_role_arns" {
  description = "Execution role of each function."
  value = {
    authorize = module.authorize.role_arn
    registry  = module.registry.role_arn
    ingest    = module.ingest.role_arn
    commands  = module.commands.role_arn
    analytics = module.analytics.role_arn
    dashboard = module.dashboard.role_arn
  }
}

output "iothubowner_connection_string" {
  description = "Owner connection string as deployed (`terraform output -raw iothubowner_connection_string`). After a key rotation the registry holds the current key."
  sensitive   = true
  value       = "HostName=${local.hub_host_name};SharedAccessKeyName=iothubowner;SharedAccessKey=${jsondecode(aws_dynamodb_table_item.policy["iothubowner"].item).primaryKey.S}"
}

output "local_emulation" {
  description = "What the local gateway (hub-local) needs to play Lambda with this configuration: each function's environment and timeout, the event source mappings and the sweep schedule, from the same values the resources use."
  value = {
    functions = {
      for name, function in {
        authorize = module.authorize
        registry  = module.registry
        ingest    = module.ingest
        commands  = module.commands
        analytics = module.analytics
        dashboard = module.dashboard
        router    = module.router
        archiver  = module.archiver
        } : name => {
        environment     = function.environment
        timeout_seconds = function.timeout_seconds
      }
    }
    telemetry_mapping = merge(local.telemetry_mapping, {
      function             = "analytics"
      stream_name          = aws_kinesis_stream.telemetry.name
      on_failure_queue_url = module.analytics_failed_batches.url
    })
    # null when no route delivers beyond the built-in endpoint (no mapping is deployed then).
    routing_mapping = local.routing_delivers ? merge(local.routing_mapping, {
      function             = "router"
      stream_name          = aws_kinesis_stream.telemetry.name
      on_failure_queue_url = module.routing_failed_batches.url
    }) : null
    archive_mapping = local.archive_fills ? merge(local.archive_mapping, {
      function             = "archiver"
      stream_name          = aws_kinesis_stream.telemetry.name
      on_failure_queue_url = module.archive_failed_batches.url
    }) : null
    # null when no route reads the registry's events.
    routing_events_mapping = local.routing_reads_events ? merge(local.routing_events_mapping, {
      function  = "router"
      queue_url = module.routing_events[0].url
    }) : null
    command_requests_mapping = merge(local.command_requests_mapping, {
      function  = "commands"
      queue_url = module.command_requests.url
    })
    job_work_mapping = merge(local.job_work_mapping, {
      function  = "registry"
      queue_url = module.job_work.url
    })
    schedule = {
      expression = local.sweep_schedule
      targets    = local.sweep_target_names
    }
  }
}

output "sweep_failures_queue_url" {
  description = "SQS queue of scheduled sweeps that failed after Lambda's retries, or that EventBridge could not deliver."
  value       = module.sweep_failures.url
}

output "alarm_topic_arn" {
  description = "SNS topic the hub's alarms notify."
  value       = local.alarm_topic_arn
}

output "routing_dead_letter_queue_url" {
  description = "SQS queue of routed messages no endpoint took after its retries, each with the reason, the endpoint and where the message came from (its stream position, or a registry event's SQS message id and body)."
  value       = module.routing_dead_letter.url
}

output "archive_bucket" {
  description = "S3 bucket of the archive (null when archive.enabled is false)."
  value       = try(aws_s3_bucket.archive[0].bucket, null)
}
