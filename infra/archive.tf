# --- The archive: the cold path (docs/routing.md) ----------------------------------------------
# Routes that name the endpoint `archive` fill an S3 bucket with gzipped JSON lines, one object
# per batch of the archiver's own mapping, named after the batch's first record so a redelivered
# batch overwrites instead of duplicating; each shard's progress is a checkpoint item.

data "aws_caller_identity" "current" {}

resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice for the operator (a second bucket and region they pick), not something the hub can default.
  #checkov:skip=CKV_AWS_145:Encrypted at rest with S3-managed keys (SSE-S3, below): a customer-managed key adds cost and changes nothing about who can read the archive, which IAM decides.
  #checkov:skip=CKV_AWS_18:Access logging needs a second bucket the operator chooses; CloudTrail data events cover who read what.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new archive objects; event notifications would only cost.
  count = var.archive.enabled ? 1 : 0

  bucket        = "${var.name_prefix}-archive-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}"
  force_destroy = !var.deletion_protection
}

resource "aws_s3_bucket_public_access_block" "archive" {
  count = var.archive.enabled ? 1 : 0

  bucket                  = aws_s3_bucket.archive[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  count = var.archive.enabled ? 1 : 0

  bucket = aws_s3_bucket.archive[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# A rewritten batch replaces its object; versions keep what it replaced for a week.
resource "aws_s3_bucket_versioning" "archive" {
  count = var.archive.enabled ? 1 : 0

  bucket = aws_s3_bucket.archive[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  count = var.archive.enabled ? 1 : 0

  bucket = aws_s3_bucket.archive[0].id
  rule {
    id     = "archive"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
    dynamic "expiration" {
      for_each = var.archive.retention_days > 0 ? [var.archive.retention_days] : []
      content {
        days = expiration.value
      }
    }
  }
  depends_on = [aws_s3_bucket_versioning.archive]
}

resource "aws_dynamodb_table" "archive_checkpoints" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key (see the note above the registry table): a customer-managed key adds cost and latency and changes nothing about who can read the data, which IAM decides.
  count = var.archive.enabled ? 1 : 0

  name                        = "${var.name_prefix}-archive-checkpoints"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "shard"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "shard"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
}

module "archive_failed_batches" {
  source            = "./modules/queue"
  name              = "${var.name_prefix}-archive-failed-batches"
  retention_seconds = 1209600
}

module "archiver" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-archiver"
  zip_path           = "${var.lambda_artifacts_dir}/archiver/bootstrap.zip"
  create_function    = var.deploy_compute && var.archive.enabled
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = var.analytics_timeout_seconds
  log_retention_days = var.log_retention_days
  tracing_mode       = var.lambda_tracing_mode
  environment = merge(local.common_environment, {
    HUB_ROUTING                   = jsonencode(local.routing)
    HUB_TWINS_TABLE               = aws_dynamodb_table.twins.name
    HUB_ARCHIVE_BUCKET            = try(aws_s3_bucket.archive[0].bucket, "")
    HUB_ARCHIVE_CHECKPOINTS_TABLE = try(aws_dynamodb_table.archive_checkpoints[0].name, "")
  })
  policy_statements = var.archive.enabled ? merge(local.routing_reads_twins ? {
    Twins = {
      actions   = ["dynamodb:BatchGetItem"]
      resources = [aws_dynamodb_table.twins.arn]
    }
    } : {}, {
    Objects = {
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.archive[0].arn}/*"]
    }
    Checkpoints = {
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
      resources = [aws_dynamodb_table.archive_checkpoints[0].arn]
    }
    PlatformReadTelemetry = {
      actions   = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"]
      resources = [aws_kinesis_stream.telemetry.arn]
    }
    PlatformOnFailure = {
      actions   = ["sqs:SendMessage"]
      resources = [module.archive_failed_batches.arn]
    }
  }) : {}
}

locals {
  archive_mapping = merge(local.telemetry_mapping, {
    batch_size                         = var.archive.batch_records
    maximum_batching_window_in_seconds = var.archive.batch_seconds
  })
}

resource "aws_lambda_event_source_mapping" "archive" {
  count = var.deploy_compute && local.archive_fills ? 1 : 0

  event_source_arn                   = aws_kinesis_stream.telemetry.arn
  function_name                      = module.archiver.function_arn
  starting_position                  = local.archive_mapping.starting_position
  batch_size                         = local.archive_mapping.batch_size
  maximum_batching_window_in_seconds = local.archive_mapping.maximum_batching_window_in_seconds
  parallelization_factor             = local.archive_mapping.parallelization_factor
  bisect_batch_on_function_error     = local.archive_mapping.bisect_batch_on_function_error
  maximum_retry_attempts             = local.archive_mapping.maximum_retry_attempts
  maximum_record_age_in_seconds      = local.archive_mapping.maximum_record_age_in_seconds

  destination_config {
    on_failure {
      destination_arn = module.archive_failed_batches.arn
    }
  }
}

# --- Athena over the archive ---------------------------------------------------------------------
# One table over the default file name format; partitions are projected (no crawler, no
# MSCK REPAIR): `partition` is the shard, `dt` the minute (yyyy/MM/dd/HH/mm). Example in
# docs/routing.md.

resource "aws_glue_catalog_database" "archive" {
  count = var.archive.enabled && var.archive.athena ? 1 : 0

  name = replace("${var.name_prefix}_archive", "-", "_")
}

resource "aws_glue_catalog_table" "messages" {
  count = var.archive.enabled && var.archive.athena ? 1 : 0

  name          = "messages"
  database_name = aws_glue_catalog_database.archive[0].name
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    "classification"              = "json"
    "compressionType"             = "gzip"
    "projection.enabled"          = "true"
    "projection.partition.type"   = "enum"
    "projection.partition.values" = join(",", [for i in range(var.telemetry_stream_shards) : format("shardId-%012d", i)])
    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy/MM/dd/HH/mm"
    "projection.dt.range"         = "2026/01/01/00/00,NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "MINUTES"
    "storage.location.template"   = "s3://${aws_s3_bucket.archive[0].bucket}/${local.hub_host_name}/$${partition}/$${dt}/"
  }

  partition_keys {
    name = "partition"
    type = "string"
  }
  partition_keys {
    name = "dt"
    type = "string"
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.archive[0].bucket}/${local.hub_host_name}/"
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    ser_de_info {
      serialization_library = "org.openx.data.jsonserde.JsonSerDe"
    }

    columns {
      name = "enqueuedtimeutc"
      type = "string"
    }
    columns {
      name = "properties"
      type = "map<string,string>"
    }
    columns {
      name = "systemproperties"
      type = "struct<connectionDeviceId:string,connectionDeviceGenerationId:string,connectionAuthMethod:string,enqueuedTime:string,messageId:string,correlationId:string,contentType:string,contentEncoding:string>"
    }
    # The body stays JSON text: each message has its own shape (json_extract in queries).
    columns {
      name = "body"
      type = "string"
    }
    columns {
      name = "hubmessageid"
      type = "string"
    }
    columns {
      name = "sequencenumber"
      type = "string"
    }
  }
}
