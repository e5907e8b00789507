output "url" {
  description = "Queue URL."
  value       = aws_sqs_queue.this.url
}

output "arn" {
  description = "Queue ARN."
  value       = aws_sqs_queue.this.arn
}

output "name" {
  description = "Queue name (the CloudWatch dimension)."
  value       = aws_sqs_queue.this.name
}
