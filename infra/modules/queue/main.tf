resource "aws_sqs_queue" "this" {
  name                       = var.name
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.retention_seconds
  sqs_managed_sse_enabled    = true

  redrive_policy = var.dead_letter_arn == null ? null : jsonencode({
    deadLetterTargetArn = var.dead_letter_arn
    maxReceiveCount     = var.max_receive_count
  })
}
