# --- Alarms -----------------------------------------------------------------------------------
# What an operator must hear about: messages parked in a dead-letter queue, analytics falling
# behind the stream, functions failing or throttled, the API answering 5xx, DynamoDB throttling,
# and integration queues nobody reads. Thresholds are variables; docs/operations.md says why each
# default is what it is and what to do when it fires.

resource "aws_sns_topic" "alarms" {
  count = var.alarm_topic_arn == null ? 1 : 0

  name = "${var.name_prefix}-alarms"
  #checkov:skip=CKV_AWS_26:CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key, a customer-managed key costs $1/month per hub, and alarm notifications carry no device data (names and thresholds only).
}

locals {
  alarm_topic_arn = coalesce(var.alarm_topic_arn, try(aws_sns_topic.alarms[0].arn, null))
  alarm_actions   = [local.alarm_topic_arn]

  # Queues whose every message means something went wrong and is waiting for a person.
  dead_letter_queues = merge({
    command-requests-dlq     = module.command_requests_dead_letter.name
    c2d-dead-letter          = module.c2d_dead_letter.name
    analytics-dead-letter    = module.analytics_dead_letter.name
    analytics-failed-batches = module.analytics_failed_batches.name
    sweep-failures           = module.sweep_failures.name
    job-work-dlq             = module.job_work_dead_letter.name
    routing-dead-letter      = module.routing_dead_letter.name
    routing-failed-batches   = module.routing_failed_batches.name
    archive-failed-batches   = module.archive_failed_batches.name
    }, local.routing_reads_events ? {
    routing-events-dlq = module.routing_events_dead_letter[0].name
  } : {})

  # Queues the hub fills and only someone else drains (the service through the feedback API,
  # integrations): left unread, their messages expire at the end of the retention period.
  undrained_queues = {
    c2d-feedback    = module.feedback.name
    alerts          = module.alerts_queue.name
    registry-events = module.registry_events.name
  }

  functions = merge({
    authorize = module.authorize.function_name
    registry  = module.registry.function_name
    ingest    = module.ingest.function_name
    commands  = module.commands.function_name
    analytics = module.analytics.function_name
    dashboard = module.dashboard.function_name
    router    = module.router.function_name
  }, var.archive.enabled ? { archiver = module.archiver.function_name } : {})

  tables = {
    registry        = aws_dynamodb_table.registry.name
    twins           = aws_dynamodb_table.twins.name
    twin-tags       = aws_dynamodb_table.twin_tags.name
    method-calls    = aws_dynamodb_table.method_calls.name
    jobs            = aws_dynamodb_table.jobs.name
    access-policies = aws_dynamodb_table.policies.name
    commands        = aws_dynamodb_table.commands.name
    analytics       = aws_dynamodb_table.analytics.name
    alerts          = aws_dynamodb_table.alerts.name
    rules           = aws_dynamodb_table.rules.name
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each = local.dead_letter_queues

  alarm_name          = "${var.name_prefix}-${each.key}-has-messages"
  alarm_description   = "Messages are waiting in ${each.value}: each is something the hub could not process and kept for a person (see docs/operations.md)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "undrained" {
  for_each = local.undrained_queues

  alarm_name          = "${var.name_prefix}-${each.key}-unread"
  alarm_description   = "The oldest message in ${each.value} is older than ${var.undrained_queue_age_alarm_seconds} s: nobody is reading it, and messages expire at the end of the queue's retention."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.undrained_queue_age_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = var.deploy_compute ? local.functions : {}

  alarm_name          = "${var.name_prefix}-${each.key}-errors"
  alarm_description   = "Invocations of ${each.value} failed (a crash, a timeout, or a sweep that could not finish). Handlers answer client errors as responses, so any error here is the hub's."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.function_errors_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "function_throttles" {
  for_each = var.deploy_compute ? local.functions : {}

  alarm_name          = "${var.name_prefix}-${each.key}-throttles"
  alarm_description   = "Invocations of ${each.value} were throttled: the account's or the function's concurrency is exhausted, and devices get errors."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "analytics_iterator_age" {
  count = var.deploy_compute ? 1 : 0

  alarm_name          = "${var.name_prefix}-analytics-behind"
  alarm_description   = "The analytics function is more than ${var.analytics_iterator_age_alarm_seconds} s behind the telemetry stream: aggregates, alerts and rule commands are late, and records older than the mapping's maximum age are skipped."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = module.analytics.function_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.analytics_iterator_age_alarm_seconds * 1000
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "routing_iterator_age" {
  count = var.deploy_compute && local.routing_delivers ? 1 : 0

  alarm_name          = "${var.name_prefix}-routing-behind"
  alarm_description   = "The router is more than ${var.analytics_iterator_age_alarm_seconds} s behind the telemetry stream: routed messages reach their endpoints late, and records older than the mapping's maximum age are skipped."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = module.router.function_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.analytics_iterator_age_alarm_seconds * 1000
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "routing_events_behind" {
  count = var.deploy_compute && local.routing_reads_events ? 1 : 0

  alarm_name          = "${var.name_prefix}-routing-events-behind"
  alarm_description   = "The oldest registry event waiting for the router is more than ${var.analytics_iterator_age_alarm_seconds} s old: routed twin, lifecycle and connection events reach their endpoints late (the router fails, is throttled, or its mapping is disabled)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = module.routing_events[0].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.analytics_iterator_age_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  count = var.deploy_compute ? 1 : 0

  alarm_name          = "${var.name_prefix}-api-5xx"
  alarm_description   = "The HTTP API answered at least ${var.api_5xx_alarm_threshold} 5xx in 5 minutes: 503 when a backing service is unavailable (clients retry), 500 for corrupt data or a refused deployment (they cannot)."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5xx"
  dimensions          = { ApiId = module.http_api[0].api_id }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.api_5xx_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "dynamodb_throttles" {
  for_each = local.tables

  alarm_name          = "${var.name_prefix}-${each.key}-throttled"
  alarm_description   = "DynamoDB throttled reads or writes on ${each.value} (on-demand tables throttle on hot keys and sudden bursts): callers see 503s and retries."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  evaluation_periods  = 1
  threshold           = var.dynamodb_throttles_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "throttles"
    expression  = "reads + writes"
    label       = "Throttle events"
    return_data = true
  }

  metric_query {
    id = "reads"
    metric {
      namespace   = "AWS/DynamoDB"
      metric_name = "ReadThrottleEvents"
      dimensions  = { TableName = each.value }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id = "writes"
    metric {
      namespace   = "AWS/DynamoDB"
      metric_name = "WriteThrottleEvents"
      dimensions  = { TableName = each.value }
      stat        = "Sum"
      period      = 300
    }
  }
}
