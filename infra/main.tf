data "aws_region" "current" {}

locals {
  # One map drives the routes and which function serves them; shared/src/routes.rs holds the same
  # table and a unit test keeps them equal.
  route_table = jsondecode(file("${path.module}/routes.json"))
  routes      = local.route_table.routes

  # Azure IoT Hub's built-in shared access policies and their rights.
  built_in_policies = {
    iothubowner       = "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect"
    service           = "ServiceConnect"
    device            = "DeviceConnect"
    registryRead      = "RegistryRead"
    registryReadWrite = "RegistryRead, RegistryWrite"
  }

  # The API endpoint without its scheme, whatever it is (emulators answer http://).
  hub_host_name = coalesce(var.hub_host_name, try(replace(module.http_api[0].api_endpoint, "/^[a-zA-Z][a-zA-Z0-9+.-]*:\\/\\//", ""), "localhost"))

  # Event source and schedule settings, used by the resources below and handed to the local
  # gateway (output `local_emulation`), so the local emulation runs what is deployed.
  telemetry_mapping = {
    batch_size                         = var.analytics_batch_size
    maximum_batching_window_in_seconds = var.analytics_batching_window_seconds
    maximum_retry_attempts             = var.analytics_max_retry_attempts
    maximum_record_age_in_seconds      = var.analytics_max_record_age_seconds
    bisect_batch_on_function_error     = true
    starting_position                  = "TRIM_HORIZON"
    parallelization_factor             = 1
  }
  command_requests_mapping = {
    batch_size                         = var.command_requests_batch_size
    maximum_batching_window_in_seconds = 1
  }
  # One work item per invocation: a chunk is up to 10 devices, done at once.
  job_work_mapping = {
    batch_size                         = 1
    maximum_batching_window_in_seconds = 0
  }
  sweep_schedule = "rate(1 minute)"

  common_environment = {
    HUB_HOST_NAME = local.hub_host_name
  }
}

# --- Identity registry -----------------------------------------------------------------------
# DynamoDB encrypts every table at rest with an AWS-owned key; a KMS key would add cost and
# latency without changing who can read the data (IAM decides that).

# Besides one item per device, the registry table holds `/statistics/<shard>` (device counts kept
# in the same transactions as the changes, sharded so concurrent writers rarely conflict) and `/outbox/<eventId>` (lifecycle events written with the
# change they describe, deleted once published; the sparse `outbox` index finds leftovers).
# Connected devices carry `connShard` (0-7), which puts them in the sparse `connected` index by
# last activity: the sweep finds the silent ones there (docs/registry.md, connection state).
resource "aws_dynamodb_table" "registry" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-registry"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "deviceId"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "deviceId"
    type = "S"
  }

  attribute {
    name = "outboxShard"
    type = "S"
  }

  attribute {
    name = "createdAt"
    type = "N"
  }

  global_secondary_index {
    name            = "outbox"
    hash_key        = "outboxShard"
    range_key       = "createdAt"
    projection_type = "ALL"
  }

  attribute {
    name = "connShard"
    type = "N"
  }

  attribute {
    name = "lastActivityTime"
    type = "S"
  }

  # What a connection-state event needs, not the device's keys.
  global_secondary_index {
    name               = "connected"
    hash_key           = "connShard"
    range_key          = "lastActivityTime"
    projection_type    = "INCLUDE"
    non_key_attributes = ["generationId", "etag", "status", "connectionSequence"]
  }

  point_in_time_recovery {
    enabled = true
  }
}

# One twin per device, deleted with the device; `version` makes every write conditional.
resource "aws_dynamodb_table" "twins" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-twins"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "deviceId"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "deviceId"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
}

# The twin tag index: one item per scalar tag leaf of each twin (`site="berlin"`, partition
# key) and device (sort key), so a twin query with a tag equality reads the devices that have it
# rather than the whole registry (docs/queries.md). Written before and removed after the twin, so
# it is a superset of the tags; queries check every twin they read.
resource "aws_dynamodb_table" "twin_tags" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-twin-tags"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "tagEntry"
  range_key                   = "deviceId"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "tagEntry"
    type = "S"
  }

  attribute {
    name = "deviceId"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
}

# Direct method calls while a service request waits for the device's answer (docs/methods.md):
# one item per call, removed when the wait ends; the TTL removes those of a request that died.
resource "aws_dynamodb_table" "method_calls" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-method-calls"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "deviceId"
  range_key                   = "requestId"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "deviceId"
    type = "S"
  }

  attribute {
    name = "requestId"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }
}

# Jobs (docs/jobs.md): per job, the job (`#job`, in the sparse `jobs` index by creation time),
# its chunks of devices (`c#<n>`) and each device's result (`d#<deviceId>`); kept 30 days.
resource "aws_dynamodb_table" "jobs" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-jobs"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "jobId"
  range_key                   = "item"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "jobId"
    type = "S"
  }

  attribute {
    name = "item"
    type = "S"
  }

  attribute {
    name = "kind"
    type = "S"
  }

  attribute {
    name = "createdTime"
    type = "S"
  }

  global_secondary_index {
    name            = "jobs"
    hash_key        = "kind"
    range_key       = "createdTime"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }
}

# Job work items (expansion steps and chunks of devices), consumed by the registry function with
# a bounded concurrency so a large job cannot crowd out device traffic.
module "job_work_dead_letter" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-job-work-dlq"
  retention_seconds = 1209600
}

module "job_work" {
  source = "./modules/queue"
  name   = "${var.name_prefix}-job-work"
  # Lambda's guidance for SQS sources: at least six times the function timeout.
  visibility_timeout_seconds = 6 * local.long_poll_timeout_seconds
  dead_letter_arn            = module.job_work_dead_letter.arn
  max_receive_count          = 5
}

resource "aws_lambda_event_source_mapping" "job_work" {
  count = var.deploy_compute ? 1 : 0

  event_source_arn                   = module.job_work.arn
  function_name                      = module.registry.function_arn
  batch_size                         = local.job_work_mapping.batch_size
  maximum_batching_window_in_seconds = local.job_work_mapping.maximum_batching_window_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]
  scaling_config {
    maximum_concurrency = var.jobs_max_concurrency
  }
}

# Device lifecycle events (createDeviceIdentity, deleteDeviceIdentity) for integrations.
module "registry_events" {
  source = "./modules/queue"
  name   = "${var.name_prefix}-registry-events"
}

resource "aws_dynamodb_table" "policies" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-access-policies"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "keyName"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "keyName"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
}

# Keys are made once, at deploy time: SHA-256 over three uuid() values (each 128 bits from the
# OS's CSPRNG) gives 32 random bytes, base64. The hashicorp/aws provider is the only one available
# offline, so there is no `random` provider. ignore_changes keeps later rotations (made through the
# hub) from being reverted. The keys are in Terraform state: keep state encrypted.
resource "aws_dynamodb_table_item" "policy" {
  for_each   = local.built_in_policies
  table_name = aws_dynamodb_table.policies.name
  hash_key   = aws_dynamodb_table.policies.hash_key

  item = jsonencode({
    keyName      = { S = each.key }
    rights       = { S = each.value }
    primaryKey   = { S = base64sha256("${uuid()}${uuid()}${uuid()}") }
    secondaryKey = { S = base64sha256("${uuid()}${uuid()}${uuid()}") }
  })

  lifecycle {
    ignore_changes = [item]
  }
}

# --- Telemetry stream ------------------------------------------------------------------------

resource "aws_kinesis_stream" "telemetry" {
  name             = "${var.name_prefix}-telemetry"
  shard_count      = var.telemetry_stream_mode == "PROVISIONED" ? var.telemetry_stream_shards : null
  retention_period = var.telemetry_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = var.telemetry_stream_mode
  }
}

# --- Functions -------------------------------------------------------------------------------

module "authorize" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-authorize"
  zip_path           = "${var.lambda_artifacts_dir}/authorize/bootstrap.zip"
  create_function    = var.deploy_compute
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = var.lambda_timeout_seconds
  log_retention_days = var.log_retention_days
  tracing_mode       = var.lambda_tracing_mode
  environment = merge(local.common_environment, {
    HUB_REGISTRY_TABLE         = aws_dynamodb_table.registry.name
    HUB_POLICIES_TABLE         = aws_dynamodb_table.policies.name
    HUB_SAS_CLOCK_SKEW_SECONDS = tostring(var.sas_clock_skew_seconds)
  })
  policy_statements = {
    ReadIdentities = {
      actions   = ["dynamodb:GetItem"]
      resources = [aws_dynamodb_table.registry.arn, aws_dynamodb_table.policies.arn]
    }
  }
}

locals {
  # The functions send in batches (SendMessageBatch). AWS authorizes that as sqs:SendMessage; some
  # emulators (MiniStack with IAM enforced) check the batch action by its own name. AWS ignores
  # action names it does not know, so granting both is exact in both places.
  sqs_send_batch_actions = ["sqs:SendMessage", "sqs:SendMessageBatch"]

  # Functions that see devices' requests record their activity (lastActivityTime, at most once a
  # minute per device) and connection state: marking a device connected or not is a transaction
  # with its event in the registry's outbox (PutItem), published and removed (DeleteItem) after.
  record_activity_statements = {
    RecordActivity = {
      actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
      resources = [aws_dynamodb_table.registry.arn]
    }
    ConnectionEvents = {
      actions   = local.sqs_send_batch_actions
      resources = concat([module.registry_events.arn], local.routing_events_arns)
    }
  }

  # Functions serving long polls (?waitSeconds, at most 20: C2D receive, desired properties) must
  # fit one in an invocation.
  long_poll_timeout_seconds = max(var.lambda_timeout_seconds, 25)
}

module "registry" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-registry"
  zip_path           = "${var.lambda_artifacts_dir}/registry/bootstrap.zip"
  create_function    = var.deploy_compute
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = local.long_poll_timeout_seconds
  log_retention_days = var.log_retention_days
  tracing_mode       = var.lambda_tracing_mode
  environment = merge(local.common_environment, local.routing_events_environment, {
    HUB_REGISTRY_TABLE            = aws_dynamodb_table.registry.name
    HUB_TWINS_TABLE               = aws_dynamodb_table.twins.name
    HUB_TWIN_TAGS_TABLE           = aws_dynamodb_table.twin_tags.name
    HUB_METHOD_CALLS_TABLE        = aws_dynamodb_table.method_calls.name
    HUB_JOBS_TABLE                = aws_dynamodb_table.jobs.name
    HUB_JOB_WORK_QUEUE_URL        = module.job_work.url
    HUB_POLICIES_TABLE            = aws_dynamodb_table.policies.name
    HUB_REGISTRY_EVENTS_QUEUE_URL = module.registry_events.url
    HUB_CONNECTED_WINDOW_SECONDS  = tostring(var.connected_window_seconds)
    HUB_ID_INDEX_COMPLETE         = tostring(var.registry_id_index_complete)
  })
  policy_statements = {
    ManageDevices = {
      actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"]
      resources = [aws_dynamodb_table.registry.arn]
    }
    RegistryIndexes = {
      actions   = ["dynamodb:Query"]
      resources = ["${aws_dynamodb_table.registry.arn}/index/outbox", "${aws_dynamodb_table.registry.arn}/index/connected"]
    }
    # A device's deletion removes its twin in the same transaction; a fleet page reads its
    # devices' twins in one BatchGetItem (GET /fleet/devices).
    Twins = {
      actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
      resources = [aws_dynamodb_table.twins.arn]
    }
    # Twin writes keep the tag index and device writes the id index; twin queries with a tag
    # equality or an id prefix read them.
    TwinTags = {
      actions   = ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"]
      resources = [aws_dynamodb_table.twin_tags.arn]
    }
    # Direct methods: the waiting service request and the device's poll and answer.
    MethodCalls = {
      actions   = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
      resources = [aws_dynamodb_table.method_calls.arn]
    }
    Policies = {
      actions   = ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.policies.arn]
    }
    # Jobs: the API, the worker's steps and counts (transactions), the listing index.
    Jobs = {
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
      resources = [aws_dynamodb_table.jobs.arn]
    }
    JobsIndex = {
      actions   = ["dynamodb:Query"]
      resources = ["${aws_dynamodb_table.jobs.arn}/index/jobs"]
    }
    JobWork = {
      actions   = local.sqs_send_batch_actions
      resources = [module.job_work.arn]
    }
    # The SQS event source mapping polls with the function's role.
    PlatformConsumeJobWork = {
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
      resources = [module.job_work.arn]
    }
    LifecycleEvents = {
      actions   = local.sqs_send_batch_actions
      resources = concat([module.registry_events.arn], local.routing_events_arns)
    }
    # Lambda itself records failed scheduled invocations with the function's role.
    PlatformSweepFailures = {
      actions   = ["sqs:SendMessage"]
      resources = [module.sweep_failures.arn]
    }
  }
}

module "ingest" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-ingest"
  zip_path           = "${var.lambda_artifacts_dir}/ingest/bootstrap.zip"
  create_function    = var.deploy_compute
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = var.lambda_timeout_seconds
  log_retention_days = var.log_retention_days
  tracing_mode       = var.lambda_tracing_mode
  environment = merge(local.common_environment, local.routing_events_environment, {
    HUB_TELEMETRY_STREAM          = aws_kinesis_stream.telemetry.name
    HUB_REGISTRY_TABLE            = aws_dynamodb_table.registry.name
    HUB_REGISTRY_EVENTS_QUEUE_URL = module.registry_events.url
    HUB_CONNECTED_WINDOW_SECONDS  = tostring(var.connected_window_seconds)
  })
  policy_statements = {
    PutTelemetry = {
      actions   = ["kinesis:PutRecords"]
      resources = [aws_kinesis_stream.telemetry.arn]
    }
    RecordActivity   = local.record_activity_statements.RecordActivity
    ConnectionEvents = local.record_activity_statements.ConnectionEvents
  }
}

# --- Cloud-to-device messages ---------------------------------------------------------------
# One item per queued message, keyed by "<deviceId>/<generationId>" and sequence number; the queue
# head (sequence, depth) lives on the device's registry item. The sparse `due` index lets the sweep
# find expired messages and unfinished settlements. TTL is only a backstop for abandoned items.

resource "aws_dynamodb_table" "commands" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-commands"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "queue"
  range_key                   = "seq"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "queue"
    type = "S"
  }

  attribute {
    name = "seq"
    type = "N"
  }

  attribute {
    name = "dueShard"
    type = "S"
  }

  attribute {
    name = "dueAt"
    type = "N"
  }

  global_secondary_index {
    name            = "due"
    hash_key        = "dueShard"
    range_key       = "dueAt"
    projection_type = "KEYS_ONLY"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }
}

module "command_requests_dead_letter" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-command-requests-dlq"
  retention_seconds = 1209600
}

module "command_requests" {
  source = "./modules/queue"
  name   = "${var.name_prefix}-command-requests"
  # Lambda's guidance for SQS sources: at least six times the function timeout.
  visibility_timeout_seconds = 6 * local.long_poll_timeout_seconds
  dead_letter_arn            = module.command_requests_dead_letter.arn
  max_receive_count          = var.command_requests_max_receive_count
}

module "feedback" {
  source = "./modules/queue"
  name   = "${var.name_prefix}-c2d-feedback"
}

module "c2d_dead_letter" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-c2d-dead-letter"
  retention_seconds = 1209600
}

module "commands" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-commands"
  zip_path           = "${var.lambda_artifacts_dir}/commands/bootstrap.zip"
  create_function    = var.deploy_compute
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = local.long_poll_timeout_seconds
  log_retention_days = var.log_retention_days
  tracing_mode       = var.lambda_tracing_mode
  environment = merge(local.common_environment, local.routing_events_environment, {
    HUB_REGISTRY_TABLE            = aws_dynamodb_table.registry.name
    HUB_COMMANDS_TABLE            = aws_dynamodb_table.commands.name
    HUB_FEEDBACK_QUEUE_URL        = module.feedback.url
    HUB_C2D_DEAD_LETTER_QUEUE_URL = module.c2d_dead_letter.url
    HUB_COMMAND_REQUESTS_DLQ_URL  = module.command_requests_dead_letter.url
    HUB_C2D_MAX_QUEUE_DEPTH       = tostring(var.c2d_max_queue_depth)
    HUB_C2D_LOCK_SECONDS          = tostring(var.c2d_lock_seconds)
    HUB_C2D_MAX_DELIVERY_COUNT    = tostring(var.c2d_max_delivery_count)
    HUB_C2D_DEFAULT_TTL_SECONDS   = tostring(var.c2d_default_ttl_seconds)
    HUB_C2D_MAX_TTL_SECONDS       = tostring(var.c2d_max_ttl_seconds)
    HUB_REGISTRY_EVENTS_QUEUE_URL = module.registry_events.url
    HUB_CONNECTED_WINDOW_SECONDS  = tostring(var.connected_window_seconds)
  })
  policy_statements = {
    RecordActivity   = local.record_activity_statements.RecordActivity
    ConnectionEvents = local.record_activity_statements.ConnectionEvents
    QueueHeads = {
      actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.registry.arn]
    }
    Queues = {
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"]
      resources = [aws_dynamodb_table.commands.arn]
    }
    DueIndex = {
      actions   = ["dynamodb:Query"]
      resources = ["${aws_dynamodb_table.commands.arn}/index/due"]
    }
    Feedback = {
      actions   = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
      resources = [module.feedback.arn]
    }
    DeadLetters = {
      actions   = ["sqs:SendMessage"]
      resources = [module.c2d_dead_letter.arn, module.command_requests_dead_letter.arn]
    }
    # The SQS event source mapping polls with the function's role.
    PlatformConsumeCommandRequests = {
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
      resources = [module.command_requests.arn]
    }
    # Lambda itself records failed scheduled invocations with the function's role.
    PlatformSweepFailures = {
      actions   = ["sqs:SendMessage"]
      resources = [module.sweep_failures.arn]
    }
  }
}

resource "aws_lambda_event_source_mapping" "command_requests" {
  count = var.deploy_compute ? 1 : 0

  event_source_arn                   = module.command_requests.arn
  function_name                      = module.commands.function_arn
  batch_size                         = local.command_requests_mapping.batch_size
  maximum_batching_window_in_seconds = local.command_requests_mapping.maximum_batching_window_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]
}

# --- The sweep schedule ------------------------------------------------------------------------
# Once a minute EventBridge invokes the commands sweep (expiry, lost locks, unfinished
# settlements) and the registry sweep (lifecycle events left in the outbox). A sweep that cannot
# finish fails its invocation; Lambda retries it, and an invocation that still fails, like an
# event EventBridge could not deliver, lands in the sweep-failures queue (alarmed on).

module "sweep_failures" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-sweep-failures"
  retention_seconds = 1209600
}

# EventBridge delivers events it could not hand to a target here.
data "aws_iam_policy_document" "sweep_failures" {
  count = var.deploy_compute ? 1 : 0

  statement {
    sid       = "EventBridgeDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [module.sweep_failures.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.sweep[0].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "sweep_failures" {
  count = var.deploy_compute ? 1 : 0

  queue_url = module.sweep_failures.url
  policy    = data.aws_iam_policy_document.sweep_failures[0].json
}

resource "aws_cloudwatch_event_rule" "sweep" {
  count = var.deploy_compute ? 1 : 0

  name                = "${var.name_prefix}-c2d-sweep"
  description         = "Expires cloud-to-device messages, finishes interrupted settlements, publishes left-over lifecycle events."
  schedule_expression = local.sweep_schedule
}

locals {
  # The schedule's targets (also run by the local gateway's emulated schedule).
  sweep_target_names = ["commands", "registry"]
  sweep_targets = var.deploy_compute ? {
    for name, function in { commands = module.commands, registry = module.registry } :
    name => function if contains(local.sweep_target_names, name)
  } : {}
}

resource "aws_cloudwatch_event_target" "sweep" {
  for_each = local.sweep_targets

  rule = aws_cloudwatch_event_rule.sweep[0].name
  arn  = each.value.function_arn

  retry_policy {
    maximum_event_age_in_seconds = 300
    maximum_retry_attempts       = 3
  }

  dead_letter_config {
    arn = module.sweep_failures.arn
  }
}

resource "aws_lambda_permission" "sweep" {
  for_each = local.sweep_targets

  statement_id  = "sweep-schedule"
  action        = "lambda:InvokeFunction"
  function_name = each.value.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.sweep[0].arn
}

# EventBridge invokes asynchronously: a failed sweep is retried by Lambda, then recorded.
resource "aws_lambda_function_event_invoke_config" "sweep" {
  for_each = local.sweep_targets

  function_name                = each.value.function_name
  maximum_event_age_in_seconds = 300
  maximum_retry_attempts       = 2

  destination_config {
    on_failure {
      destination = module.sweep_failures.arn
    }
  }
}

# --- Stream analytics ------------------------------------------------------------------------
# Aggregates, device states and shard checkpoints share one table (pk/sk); alerts have their own
# with a sparse index of the active ones; rules their own. See docs/analytics.md.

resource "aws_dynamodb_table" "analytics" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-analytics"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }
}

resource "aws_dynamodb_table" "alerts" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-alerts"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "alertId"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "alertId"
    type = "S"
  }

  attribute {
    name = "activeKey"
    type = "S"
  }

  global_secondary_index {
    name            = "active"
    hash_key        = "activeKey"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }
}

resource "aws_dynamodb_table" "rules" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  name                        = "${var.name_prefix}-rules"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "id"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
}

module "alerts_queue" {
  source = "./modules/queue"
  name   = "${var.name_prefix}-alerts"
}

module "analytics_dead_letter" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-analytics-dead-letter"
  retention_seconds = 1209600
}

module "analytics_failed_batches" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-analytics-failed-batches"
  retention_seconds = 1209600
}

module "analytics" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-analytics"
  zip_path           = "${var.lambda_artifacts_dir}/analytics/bootstrap.zip"
  create_function    = var.deploy_compute
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = var.analytics_timeout_seconds
  log_retention_days = var.log_retention_days
  tracing_mode       = var.lambda_tracing_mode
  environment = merge(local.common_environment, {
    HUB_ANALYTICS_TABLE            = aws_dynamodb_table.analytics.name
    HUB_ALERTS_TABLE               = aws_dynamodb_table.alerts.name
    HUB_RULES_TABLE                = aws_dynamodb_table.rules.name
    HUB_TWINS_TABLE                = aws_dynamodb_table.twins.name
    HUB_COMMAND_REQUESTS_QUEUE_URL = module.command_requests.url
    HUB_ALERTS_QUEUE_URL           = module.alerts_queue.url
    HUB_ANALYTICS_DLQ_URL          = module.analytics_dead_letter.url
    HUB_ANALYTICS_WINDOWS          = join(",", var.analytics_windows)
    HUB_ANALYTICS_RETENTION_DAYS   = tostring(var.analytics_retention_days)
    HUB_ANALYTICS_RECENT_READINGS  = tostring(var.analytics_recent_readings)
    HUB_RULES_CACHE_SECONDS        = tostring(var.rules_cache_seconds)
  })
  policy_statements = {
    State = {
      actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
      resources = [aws_dynamodb_table.analytics.arn]
    }
    Alerts = {
      actions   = ["dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:Scan"]
      resources = [aws_dynamodb_table.alerts.arn]
    }
    ActiveAlerts = {
      actions   = ["dynamodb:Query"]
      resources = ["${aws_dynamodb_table.alerts.arn}/index/active"]
    }
    Rules = {
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan"]
      resources = [aws_dynamodb_table.rules.arn]
    }
    # Twin tags, for rules that select devices by tag.
    TwinTags = {
      actions   = ["dynamodb:BatchGetItem"]
      resources = [aws_dynamodb_table.twins.arn]
    }
    # The Kinesis event source mapping reads the stream, and reports abandoned batches to the
    # on-failure destination, with the function's role.
    PlatformReadTelemetry = {
      actions   = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"]
      resources = [aws_kinesis_stream.telemetry.arn]
    }
    PlatformOnFailure = {
      actions   = ["sqs:SendMessage"]
      resources = [module.analytics_failed_batches.arn]
    }
    Send = {
      actions = local.sqs_send_batch_actions
      resources = [
        module.command_requests.arn,
        module.alerts_queue.arn,
        module.analytics_dead_letter.arn,
      ]
    }
  }
}

resource "aws_lambda_event_source_mapping" "telemetry" {
  count = var.deploy_compute ? 1 : 0

  event_source_arn                   = aws_kinesis_stream.telemetry.arn
  function_name                      = module.analytics.function_arn
  starting_position                  = local.telemetry_mapping.starting_position
  batch_size                         = local.telemetry_mapping.batch_size
  maximum_batching_window_in_seconds = local.telemetry_mapping.maximum_batching_window_in_seconds
  parallelization_factor             = local.telemetry_mapping.parallelization_factor
  bisect_batch_on_function_error     = local.telemetry_mapping.bisect_batch_on_function_error
  maximum_retry_attempts             = local.telemetry_mapping.maximum_retry_attempts
  maximum_record_age_in_seconds      = local.telemetry_mapping.maximum_record_age_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  destination_config {
    on_failure {
      destination_arn = module.analytics_failed_batches.arn
    }
  }
}

# --- HTTP API --------------------------------------------------------------------------------

# --- Dashboard ---------------------------------------------------------------------------------
# Serves the web dashboard's files, embedded in its binary, on the API's own origin (`/ui`). It
# reads nothing: the page calls the API with tokens it signs in the browser.

module "dashboard" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-dashboard"
  zip_path           = "${var.lambda_artifacts_dir}/dashboard/bootstrap.zip"
  create_function    = var.deploy_compute
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = var.lambda_timeout_seconds
  log_retention_days = var.log_retention_days
  tracing_mode       = var.lambda_tracing_mode
  environment        = local.common_environment
  policy_statements  = {}
}

module "http_api" {
  source = "./modules/http_api"
  count  = var.deploy_compute ? 1 : 0

  name                   = "${var.name_prefix}-api"
  routes                 = local.routes
  public_routes          = local.route_table.public
  log_retention_days     = var.log_retention_days
  throttling_burst_limit = var.api_throttling_burst_limit
  throttling_rate_limit  = var.api_throttling_rate_limit
  # Per route unless an emulator needs otherwise (see the variable).
  invoke_permission_per_route = var.api_invoke_permission_per_route

  authorizer = {
    function_name = module.authorize.function_name
    invoke_arn    = module.authorize.invoke_arn
  }

  functions = {
    registry = {
      function_name = module.registry.function_name
      invoke_arn    = module.registry.invoke_arn
    }
    ingest = {
      function_name = module.ingest.function_name
      invoke_arn    = module.ingest.invoke_arn
    }
    commands = {
      function_name = module.commands.function_name
      invoke_arn    = module.commands.invoke_arn
    }
    analytics = {
      function_name = module.analytics.function_name
      invoke_arn    = module.analytics.invoke_arn
    }
    dashboard = {
      function_name = module.dashboard.function_name
      invoke_arn    = module.dashboard.invoke_arn
    }
  }
}
