variable "name" {
  description = "Function name; also names its role and log group."
  type        = string
}

variable "zip_path" {
  description = "Path of the function's bootstrap.zip (provided.al2023 custom runtime)."
  type        = string
}

variable "create_function" {
  description = "Create the Lambda function itself. The role, its policy and the log group are always created."
  type        = bool
  default     = true
}

variable "architecture" {
  description = "arm64 or x86_64."
  type        = string
}

variable "memory_mb" {
  description = "Memory in MB."
  type        = number
}

variable "timeout_seconds" {
  description = "Timeout in seconds."
  type        = number
}

variable "log_retention_days" {
  description = "Retention of the function's log group."
  type        = number
}

variable "environment" {
  description = "Environment variables (the function's typed configuration)."
  type        = map(string)
  default     = {}
}

variable "policy_statements" {
  description = "What the function may do besides writing its own logs: statement id => actions and the exact resource ARNs."
  type = map(object({
    actions   = list(string)
    resources = list(string)
  }))
}

variable "tracing_mode" {
  description = "X-Ray tracing: PassThrough (only when the caller traces) or Active."
  type        = string
  default     = "PassThrough"
}
