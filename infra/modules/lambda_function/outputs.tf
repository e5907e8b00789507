output "function_name" {
  description = "Name of the function (known even when it is not created). Read from the function itself when it exists, so whatever references it (permissions, targets) is created after the function and replaced with it."
  value       = try(aws_lambda_function.this[0].function_name, var.name)
}

output "function_arn" {
  description = "ARN of the function, or null when not created."
  value       = try(aws_lambda_function.this[0].arn, null)
}

output "invoke_arn" {
  description = "Invoke ARN for API Gateway integrations, or null when not created."
  value       = try(aws_lambda_function.this[0].invoke_arn, null)
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.this.arn
}

output "log_group_name" {
  description = "The function's log group."
  value       = aws_cloudwatch_log_group.this.name
}

output "environment" {
  description = "The function's environment variables, as deployed (the local gateway runs the function with exactly these)."
  value       = var.environment
}

output "timeout_seconds" {
  description = "The function's timeout."
  value       = var.timeout_seconds
}
