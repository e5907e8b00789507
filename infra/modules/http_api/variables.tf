variable "name" {
  description = "Name of the HTTP API."
  type        = string
}

variable "routes" {
  description = "Route key (\"METHOD /path\") => key of the function in `functions` that serves it."
  type        = map(string)
}

variable "public_routes" {
  description = "Route keys served without the authorizer."
  type        = list(string)
  default     = []
}

variable "functions" {
  description = "Functions that serve routes: key => name and invoke ARN."
  type = map(object({
    function_name = string
    invoke_arn    = string
  }))
}

variable "authorizer" {
  description = "The Lambda REQUEST authorizer every route uses."
  type = object({
    function_name = string
    invoke_arn    = string
  })
}

variable "log_retention_days" {
  description = "Retention of the access log group."
  type        = number
}

variable "throttling_burst_limit" {
  description = "Default route burst limit."
  type        = number
}

variable "throttling_rate_limit" {
  description = "Default route steady-state rate limit (requests per second)."
  type        = number
}

variable "invoke_permission_per_route" {
  description = "One Lambda invoke permission per route (least privilege: a function may be invoked by this API for its own routes only). False grants each function one permission for the whole API, for emulators that lose statements when one function's policy is changed concurrently."
  type        = bool
  default     = true
}
