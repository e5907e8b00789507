# --- Message routing (docs/routing.md) ---------------------------------------------------------
# The router reads the telemetry stream with its own event source mapping (beside analytics'),
# matches each message against the routes, and delivers it to each chosen custom endpoint once.
# What no endpoint takes after its retries goes to the routing dead-letter queue with the reason.
# Routes of the registry's events (twin changes, lifecycle, connection state) read a copy of the
# registry events queue: the functions that publish events send to both, and the router has an
# SQS mapping on the copy.

locals {
  routing = {
    hubName = local.hub_host_name
    endpoints = merge(var.routing_endpoints, var.archive.enabled ? {
      archive = { type = "s3", arn = aws_s3_bucket.archive[0].arn, fileNameFormat = var.archive.file_name_format }
    } : {})
    routes      = var.routes
    enrichments = var.routing_enrichments
    fallback    = var.routing_fallback
  }
  # The mapping (and its cost) exists only when a route delivers somewhere beyond the stream.
  routing_delivers = length([for r in var.routes : r if r.enabled && r.source == "DeviceMessages" && !contains(["events", "archive"], r.endpoint)]) > 0
  # The registry events' copy (and its mapping) exists only when a route reads events.
  routing_reads_events = length([for r in var.routes : r if r.enabled && r.source != "DeviceMessages"]) > 0
  routing_events_arns  = module.routing_events[*].arn
  # What the functions publishing events add to their environment.
  routing_events_environment = local.routing_reads_events ? {
    HUB_ROUTING_EVENTS_QUEUE_URL = module.routing_events[0].url
  } : {}
  routing_events_mapping = {
    batch_size                         = 10
    maximum_batching_window_in_seconds = 1
  }
  # The archiver's mapping, when a route fills the archive.
  archive_fills = var.archive.enabled && length([for r in var.routes : r if r.enabled && r.endpoint == "archive"]) > 0

  # Twins are read only for routes and enrichments that name them.
  routing_reads_twins = anytrue(concat(
    [for r in var.routes : strcontains(lower(r.condition), "$twin")],
    [for e in var.routing_enrichments : startswith(lower(e.value), "$twin.")],
  ))

  routing_arns = {
    for type in ["sqs", "sns", "kinesis", "eventbridge"] :
    type => sort([for e in var.routing_endpoints : e.arn if e.type == type])
  }
  # The stream mappings share analytics' retry, age and bisect settings; only the batching differs.
  routing_mapping = merge(local.telemetry_mapping, {
    batch_size                         = var.routing_batch_size
    maximum_batching_window_in_seconds = 1
  })
}

module "routing_dead_letter" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-routing-dead-letter"
  retention_seconds = 1209600
}

module "routing_failed_batches" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-routing-failed-batches"
  retention_seconds = 1209600
}

# The router dead-letters what endpoints refuse; an event it could not even dead-letter comes
# back, and after five receives lands here as it was published.
module "routing_events_dead_letter" {
  source            = "./modules/queue"
  count             = local.routing_reads_events ? 1 : 0
  name              = "${var.name_prefix}-routing-events-dlq"
  retention_seconds = 1209600
}

module "routing_events" {
  source = "./modules/queue"
  count  = local.routing_reads_events ? 1 : 0
  name   = "${var.name_prefix}-routing-events"
  # Lambda's guidance for SQS sources: at least six times the function timeout.
  visibility_timeout_seconds = 6 * var.analytics_timeout_seconds
  dead_letter_arn            = module.routing_events_dead_letter[0].arn
  max_receive_count          = 5
}

module "router" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-router"
  zip_path           = "${var.lambda_artifacts_dir}/router/bootstrap.zip"
  create_function    = var.deploy_compute
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = var.analytics_timeout_seconds
  log_retention_days = var.log_retention_days
  tracing_mode       = var.lambda_tracing_mode
  environment = merge(local.common_environment, {
    HUB_ROUTING              = jsonencode(local.routing)
    HUB_TWINS_TABLE          = aws_dynamodb_table.twins.name
    HUB_ROUTING_DLQ_URL      = module.routing_dead_letter.url
    HUB_ROUTING_MAX_ATTEMPTS = tostring(var.routing_max_attempts)
    HUB_ROUTING_METRICS      = "emf"
  })
  policy_statements = merge(
    {
      DeadLetters = {
        actions   = local.sqs_send_batch_actions
        resources = [module.routing_dead_letter.arn]
      }
      PlatformReadTelemetry = {
        actions   = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"]
        resources = [aws_kinesis_stream.telemetry.arn]
      }
      PlatformOnFailure = {
        actions   = ["sqs:SendMessage"]
        resources = [module.routing_failed_batches.arn]
      }
    },
    local.routing_reads_twins ? {
      Twins = { actions = ["dynamodb:BatchGetItem"], resources = [aws_dynamodb_table.twins.arn] }
    } : {},
    # The SQS event source mapping polls with the function's role.
    local.routing_reads_events ? {
      PlatformConsumeEvents = {
        actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
        resources = local.routing_events_arns
      }
    } : {},
    length(local.routing_arns.sqs) == 0 ? {} : {
      RouteToQueues = { actions = local.sqs_send_batch_actions, resources = local.routing_arns.sqs }
    },
    length(local.routing_arns.sns) == 0 ? {} : {
      RouteToTopics = { actions = ["sns:Publish"], resources = local.routing_arns.sns }
    },
    length(local.routing_arns.kinesis) == 0 ? {} : {
      RouteToStreams = { actions = ["kinesis:PutRecords"], resources = local.routing_arns.kinesis }
    },
    length(local.routing_arns.eventbridge) == 0 ? {} : {
      RouteToEventBuses = { actions = ["events:PutEvents"], resources = local.routing_arns.eventbridge }
    },
  )
}

resource "aws_lambda_event_source_mapping" "routing" {
  count = var.deploy_compute && local.routing_delivers ? 1 : 0

  lifecycle {
    precondition {
      condition     = !contains(local.routing_arns.kinesis, aws_kinesis_stream.telemetry.arn)
      error_message = "A routing endpoint is the telemetry stream itself: every routed copy would be routed again, without end. Route to `events` instead."
    }
  }

  event_source_arn                   = aws_kinesis_stream.telemetry.arn
  function_name                      = module.router.function_arn
  starting_position                  = local.routing_mapping.starting_position
  batch_size                         = local.routing_mapping.batch_size
  maximum_batching_window_in_seconds = local.routing_mapping.maximum_batching_window_in_seconds
  parallelization_factor             = local.routing_mapping.parallelization_factor
  bisect_batch_on_function_error     = local.routing_mapping.bisect_batch_on_function_error
  maximum_retry_attempts             = local.routing_mapping.maximum_retry_attempts
  maximum_record_age_in_seconds      = local.routing_mapping.maximum_record_age_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  destination_config {
    on_failure {
      destination_arn = module.routing_failed_batches.arn
    }
  }
}

resource "aws_lambda_event_source_mapping" "routing_events" {
  count = var.deploy_compute && local.routing_reads_events ? 1 : 0

  event_source_arn                   = module.routing_events[0].arn
  function_name                      = module.router.function_arn
  batch_size                         = local.routing_events_mapping.batch_size
  maximum_batching_window_in_seconds = local.routing_events_mapping.maximum_batching_window_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]
}
