locals {
  # Set for LocalStack (or another emulator): every service the hub uses goes to that endpoint,
  # with test credentials and without the credential and metadata checks AWS needs. The account
  # id is still asked for (the emulator's STS answers): without it the provider writes ARNs with
  # an empty account, and permissions built from them never match.
  emulated = var.aws_endpoint_url != null
}

provider "aws" {
  region = var.region

  access_key                  = local.emulated ? "test" : null
  secret_key                  = local.emulated ? "test" : null
  skip_credentials_validation = local.emulated
  skip_metadata_api_check     = local.emulated
  # Emulators serve buckets under their own host, not <bucket>.s3.amazonaws.com.
  s3_use_path_style = local.emulated

  dynamic "endpoints" {
    for_each = local.emulated ? [var.aws_endpoint_url] : []
    content {
      apigatewayv2   = endpoints.value
      cloudwatch     = endpoints.value
      cloudwatchlogs = endpoints.value
      dynamodb       = endpoints.value
      events         = endpoints.value
      glue           = endpoints.value
      iam            = endpoints.value
      kinesis        = endpoints.value
      lambda         = endpoints.value
      s3             = endpoints.value
      sns            = endpoints.value
      sqs            = endpoints.value
      sts            = endpoints.value
    }
  }

  default_tags {
    tags = merge({ Project = "iot-hub", HubName = var.name_prefix, ManagedBy = "terraform" }, var.tags)
  }
}
