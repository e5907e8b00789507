variable "name" {
  description = "Queue name."
  type        = string
}

variable "visibility_timeout_seconds" {
  description = "How long a received message stays invisible to other receivers."
  type        = number
  default     = 30
}

variable "retention_seconds" {
  description = "How long unconsumed messages are kept (60 s to 14 days)."
  type        = number
  default     = 345600
}

variable "dead_letter_arn" {
  description = "Dead-letter queue for messages received max_receive_count times without being deleted; null for none."
  type        = string
  default     = null
}

variable "max_receive_count" {
  description = "Receives before a message moves to the dead-letter queue."
  type        = number
  default     = 5
}
