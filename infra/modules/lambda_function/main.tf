data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest already; a customer-managed KMS key would add $1/month and a KMS call per batch of log events for no change in who can read them (IAM decides that). Logs hold ids and outcomes, never keys or message bodies.
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

# Least privilege: the listed actions on the listed ARNs, and log events into this function's own
# log group. The log-stream name is the only wildcard: Lambda picks it at run time.
data "aws_iam_policy_document" "permissions" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:log-stream:*"]
  }

  # Active tracing: the runtime sends segments to X-Ray, which takes no resource-level scope.
  dynamic "statement" {
    for_each = var.tracing_mode == "Active" ? [1] : []
    content {
      sid       = "PlatformXRay"
      actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = var.policy_statements
    content {
      sid       = statement.key
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "${var.name}-permissions"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.permissions.json
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_115:A reserved concurrency caps a function below the account's pool and throttles devices at the cap; the hub limits load at the API instead (api_throttling_* variables) and alarms on throttles.
  #checkov:skip=CKV_AWS_116:No function is invoked asynchronously by anything but the sweep schedule, whose failures go to the sweep-failures queue through an on-failure destination (aws_lambda_function_event_invoke_config in main.tf), which checkov does not recognise; the API invokes synchronously and the event source mappings keep their own failures.
  #checkov:skip=CKV_AWS_117:The functions call only AWS service endpoints; a VPC would need NAT gateways or interface endpoints (tens of dollars a month) and add cold-start latency, for no resource the hub has inside a VPC.
  #checkov:skip=CKV_AWS_173:The environment holds resource names and limits only, never secrets (policy and device keys live in DynamoDB); Lambda encrypts it at rest with its service key.
  #checkov:skip=CKV_AWS_272:Packages are built and deployed by the same operator from this repository; code signing needs an AWS Signer profile per deployment, which the operator can add to this module where their policy demands it.
  #checkov:skip=CKV_AWS_50:Active X-Ray tracing costs $5 per million traces, more than the hub's whole per-message cost target; set lambda_tracing_mode = "Active" to trace.
  count = var.create_function ? 1 : 0

  function_name    = var.name
  role             = aws_iam_role.this.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  memory_size      = var.memory_mb
  timeout          = var.timeout_seconds

  environment {
    variables = var.environment
  }

  tracing_config {
    mode = var.tracing_mode
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.this.name
    application_log_level = "INFO"
    system_log_level      = "WARN"
  }

  depends_on = [aws_iam_role_policy.this]
}
