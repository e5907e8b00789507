data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  # One map drives the routes and which function serves them; shared/src/routes.rs holds the same
  # table and a unit test keeps them equal.
  routes = jsondecode(file("${path.module}/routes.json"))

  # Azure IoT Hub's built-in shared access policies and their rights.
  built_in_policies = {
    iothubowner       = "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect"
    service           = "ServiceConnect"
    registryRead      = "RegistryRead"
    registryReadWrite = "RegistryRead, RegistryWrite"
  }

  hub_host_name = coalesce(var.hub_host_name, try(trimprefix(module.http_api[0].api_endpoint, "https://"), "localhost"))

  common_environment = {
    HUB_HOST_NAME = local.hub_host_name
  }
}

# --- Identity registry -----------------------------------------------------------------------
# DynamoDB encrypts every table at rest with an AWS-owned key; a KMS key would add cost and
# latency without changing who can read the data (IAM decides that).

resource "aws_dynamodb_table" "registry" {
  name                        = "${var.name_prefix}-registry"
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

resource "aws_dynamodb_table" "policies" {
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

module "registry" {
  source = "./modules/lambda_function"

  name               = "${var.name_prefix}-registry"
  zip_path           = "${var.lambda_artifacts_dir}/registry/bootstrap.zip"
  create_function    = var.deploy_compute
  architecture       = var.lambda_architecture
  memory_mb          = var.lambda_memory_mb
  timeout_seconds    = var.lambda_timeout_seconds
  log_retention_days = var.log_retention_days
  environment = merge(local.common_environment, {
    HUB_REGISTRY_TABLE = aws_dynamodb_table.registry.name
  })
  policy_statements = {
    ManageDevices = {
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
      resources = [aws_dynamodb_table.registry.arn]
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
  environment = merge(local.common_environment, {
    HUB_TELEMETRY_STREAM = aws_kinesis_stream.telemetry.name
  })
  policy_statements = {
    PutTelemetry = {
      actions   = ["kinesis:PutRecords"]
      resources = [aws_kinesis_stream.telemetry.arn]
    }
  }
}

# --- HTTP API --------------------------------------------------------------------------------

module "http_api" {
  source = "./modules/http_api"
  count  = var.deploy_compute ? 1 : 0

  name                   = "${var.name_prefix}-api"
  routes                 = local.routes
  log_retention_days     = var.log_retention_days
  throttling_burst_limit = var.api_throttling_burst_limit
  throttling_rate_limit  = var.api_throttling_rate_limit

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
  }
}
