variable "name_prefix" {
  description = "Prefix of every resource name; one hub per prefix and region."
  type        = string
  default     = "iothub"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "aws_endpoint_url" {
  description = "Endpoint of an AWS emulator such as LocalStack (e.g. http://127.0.0.1:4566). Leave null to deploy to AWS."
  type        = string
  default     = null
}

variable "deploy_compute" {
  description = "Create the Lambda functions, their invoke permissions and the HTTP API. LocalStack's free edition runs neither Lambda (without Docker) nor API Gateway v2, so the local set-up sets this to false and serves the same handlers with the local gateway."
  type        = bool
  default     = true
}

variable "hub_host_name" {
  description = "Host name devices and services use (the `sr` of SAS tokens and HostName of connection strings), e.g. a custom domain mapped to the API. Null uses the API's execute-api host."
  type        = string
  default     = null
}

variable "lambda_artifacts_dir" {
  description = "Directory holding <function>/bootstrap.zip, as `cargo lambda build --release --output-format zip` writes them."
  type        = string
  default     = "../target/lambda"
}

variable "lambda_architecture" {
  description = "Instruction set the function zips were built for."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be arm64 or x86_64."
  }
}

variable "lambda_memory_mb" {
  description = "Memory of each function in MB (CPU scales with it)."
  type        = number
  default     = 256

  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240
    error_message = "lambda_memory_mb must be between 128 and 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout of each function; API Gateway gives up after 30 s regardless."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 29
    error_message = "lambda_timeout_seconds must be between 1 and 29."
  }
}

variable "telemetry_stream_mode" {
  description = "Kinesis capacity mode of the telemetry stream: PROVISIONED (cheapest at steady load) or ON_DEMAND."
  type        = string
  default     = "PROVISIONED"

  validation {
    condition     = contains(["PROVISIONED", "ON_DEMAND"], var.telemetry_stream_mode)
    error_message = "telemetry_stream_mode must be PROVISIONED or ON_DEMAND."
  }
}

variable "telemetry_stream_shards" {
  description = "Shards of the telemetry stream in PROVISIONED mode (each takes 1 MB/s or 1000 records/s in)."
  type        = number
  default     = 2

  validation {
    condition     = var.telemetry_stream_shards >= 1
    error_message = "telemetry_stream_shards must be at least 1."
  }
}

variable "telemetry_retention_hours" {
  description = "How long the telemetry stream keeps records (24 to 8760 hours)."
  type        = number
  default     = 24

  validation {
    condition     = var.telemetry_retention_hours >= 24 && var.telemetry_retention_hours <= 8760
    error_message = "telemetry_retention_hours must be between 24 and 8760."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' and the API's CloudWatch log groups."
  type        = number
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "sas_clock_skew_seconds" {
  description = "Clock difference tolerated when checking the expiry of SAS tokens."
  type        = number
  default     = 60

  validation {
    condition     = var.sas_clock_skew_seconds >= 0 && var.sas_clock_skew_seconds <= 900
    error_message = "sas_clock_skew_seconds must be between 0 and 900."
  }
}

variable "api_throttling_burst_limit" {
  description = "Burst limit of the HTTP API's default route throttling."
  type        = number
  default     = 1000
}

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second of the HTTP API's default route throttling."
  type        = number
  default     = 500
}

variable "connected_window_seconds" {
  description = "How recently an HTTP device must have been active to count as connected: its twin's connectionState and GET /statistics/service's connectedDeviceCount."
  type        = number
  default     = 300

  validation {
    condition     = var.connected_window_seconds >= 10 && var.connected_window_seconds <= 86400
    error_message = "connected_window_seconds must be from 10 to 86400."
  }
}

variable "c2d_max_queue_depth" {
  description = "Cloud-to-device messages a device's queue may hold before sends get 403 DeviceMaximumQueueDepthExceeded (Azure: 50)."
  type        = number
  default     = 50
}

variable "c2d_lock_seconds" {
  description = "How long a received cloud-to-device message stays locked to its receiver (Azure: 60)."
  type        = number
  default     = 60
}

variable "c2d_max_delivery_count" {
  description = "Deliveries before a cloud-to-device message is dead-lettered (Azure: 10)."
  type        = number
  default     = 10
}

variable "c2d_default_ttl_seconds" {
  description = "Time to live of cloud-to-device messages that set no expiry (Azure: 1 hour)."
  type        = number
  default     = 3600
}

variable "c2d_max_ttl_seconds" {
  description = "Longest time to live a cloud-to-device message may ask for (Azure: 2 days)."
  type        = number
  default     = 172800

  validation {
    condition     = var.c2d_max_ttl_seconds >= 60
    error_message = "c2d_max_ttl_seconds must be at least 60."
  }
}

variable "jobs_max_concurrency" {
  description = "Most registry invocations working on jobs at once (the job-work queue mapping's maximum concurrency): with up to 10 devices per invocation, this bounds how much of the account's Lambda concurrency and DynamoDB capacity jobs take from device traffic."
  type        = number
  default     = 2
  validation {
    condition     = var.jobs_max_concurrency >= 2 && var.jobs_max_concurrency <= 1000
    error_message = "jobs_max_concurrency must be from 2 to 1000 (Lambda's limits for an SQS mapping)."
  }
}

variable "command_requests_batch_size" {
  description = "Command requests per invocation of the commands function (SQS event source mapping)."
  type        = number
  default     = 10
}

variable "command_requests_max_receive_count" {
  description = "Receives of a command request before SQS moves it to the dead-letter queue."
  type        = number
  default     = 5
}

variable "analytics_windows" {
  description = "Tumbling windows the analytics function aggregates, e.g. [\"1m\", \"1h\"] (1 to 4; units s, m, h, d)."
  type        = list(string)
  default     = ["1m", "1h"]

  validation {
    condition     = length(var.analytics_windows) >= 1 && length(var.analytics_windows) <= 4 && alltrue([for w in var.analytics_windows : can(regex("^[1-9][0-9]*[smhd]$", w))])
    error_message = "analytics_windows must list 1 to 4 windows like 30s, 1m, 1h or 1d."
  }
}

variable "analytics_recent_readings" {
  description = "Latest readings each device state keeps, the raw points a dashboard chart draws for its most recent stretch (0 to 100; 0: none). Each adds about 60 bytes to a state item written once per device and batch in a transaction (2 write units per KB): 20 readings of 3 fields cost about 2 more write units per device and batch."
  type        = number
  default     = 0

  validation {
    condition     = var.analytics_recent_readings >= 0 && var.analytics_recent_readings <= 100 && floor(var.analytics_recent_readings) == var.analytics_recent_readings
    error_message = "analytics_recent_readings must be a whole number from 0 to 100."
  }
}

variable "analytics_retention_days" {
  description = "How long window aggregates are kept (DynamoDB TTL)."
  type        = number
  default     = 30
}

variable "analytics_timeout_seconds" {
  description = "Timeout of the analytics function."
  type        = number
  default     = 60
}

variable "analytics_batch_size" {
  description = "Kinesis records per analytics invocation."
  type        = number
  default     = 500
}

variable "analytics_batching_window_seconds" {
  description = "How long the event source mapping gathers records before invoking (0 to 300)."
  type        = number
  default     = 1
}

variable "analytics_max_retry_attempts" {
  description = "Retries of a failing batch before it is reported to the failed-batches queue and skipped."
  type        = number
  default     = 10
}

variable "analytics_max_record_age_seconds" {
  description = "Records older than this are skipped (and reported) instead of retried; -1 for no limit."
  type        = number
  default     = 86400
}

variable "rules_cache_seconds" {
  description = "How long the analytics function reuses the rules it read."
  type        = number
  default     = 10
}

variable "deletion_protection" {
  description = "Protect the registry and policy tables from deletion (turn off to destroy a test hub)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "alarm_topic_arn" {
  description = "SNS topic the alarms notify. Null creates `<name_prefix>-alarms`; subscribe to it (e-mail, chat, paging)."
  type        = string
  default     = null
}

variable "undrained_queue_age_alarm_seconds" {
  description = "Age of the oldest message in a queue only others drain (feedback, alerts, registry events) above which the alarm fires; keep it well under the queues' 4-day retention."
  type        = number
  default     = 21600

  validation {
    condition     = var.undrained_queue_age_alarm_seconds >= 300 && var.undrained_queue_age_alarm_seconds < 345600
    error_message = "undrained_queue_age_alarm_seconds must be between 300 and 345599 (the queues keep messages for 4 days)."
  }
}

variable "function_errors_alarm_threshold" {
  description = "Failed invocations of one function within 5 minutes that raise its alarm."
  type        = number
  default     = 1
}

variable "analytics_iterator_age_alarm_seconds" {
  description = "How far (in seconds) the analytics function may fall behind the telemetry stream, in 3 of 5 minutes, before its alarm fires."
  type        = number
  default     = 300
}

variable "api_5xx_alarm_threshold" {
  description = "5xx answers of the HTTP API within 5 minutes that raise its alarm."
  type        = number
  default     = 10
}

variable "dynamodb_throttles_alarm_threshold" {
  description = "Throttled reads plus writes on one table within 5 minutes that raise its alarm."
  type        = number
  default     = 10
}

variable "lambda_tracing_mode" {
  description = "X-Ray tracing of the functions: PassThrough (traced only when the caller is) or Active (every invocation; $5 per million traces)."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.lambda_tracing_mode)
    error_message = "lambda_tracing_mode must be PassThrough or Active."
  }
}

variable "api_invoke_permission_per_route" {
  description = "One Lambda invoke permission per API route (least privilege, the default). MiniStack loses statements when one function's resource policy is changed concurrently (the registry serves most routes), so its environment grants one permission per function for the whole API instead."
  type        = bool
  default     = true
}

# --- Message routing (docs/routing.md) --------------------------------------------------------

variable "routing_endpoints" {
  description = "Custom endpoints of message routing, by name (Azure's custom endpoints): type sqs, sns, kinesis or eventbridge, the queue's, topic's, stream's or event bus's ARN, and for sqs its URL. The router gets permission to send to exactly these."
  type = map(object({
    type = string
    arn  = string
    url  = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for name, e in var.routing_endpoints : can(regex("^[A-Za-z0-9._-]{1,64}$", name)) && !contains(["events", "archive"], name)])
    error_message = "Endpoint names are 1-64 letters, digits, '.', '_' or '-'; \"events\" (the telemetry stream) and \"archive\" (the S3 archive) are the hub's own."
  }
  validation {
    condition     = alltrue([for e in var.routing_endpoints : contains(["sqs", "sns", "kinesis", "eventbridge"], e.type)])
    error_message = "An endpoint's type is sqs, sns, kinesis or eventbridge."
  }
  validation {
    condition     = alltrue([for e in var.routing_endpoints : startswith(e.arn, "arn:") && try(split(":", e.arn)[2], "") == (e.type == "eventbridge" ? "events" : e.type)])
    error_message = "An endpoint's arn must be an ARN of its type (arn:aws:sqs:..., arn:aws:sns:..., arn:aws:kinesis:..., arn:aws:events:...)."
  }
  validation {
    condition     = alltrue([for e in var.routing_endpoints : (e.type == "sqs") == (e.url != null)])
    error_message = "sqs endpoints need their url; other types take none."
  }
  validation {
    condition     = alltrue([for t in ["sqs", "sns", "kinesis", "eventbridge"] : length([for e in var.routing_endpoints : e if e.type == t]) <= 10])
    error_message = "At most 10 endpoints of each type, as Azure."
  }
}

variable "routes" {
  description = "Message routes, in order (Azure's routes): a unique name, the source (DeviceMessages, TwinChangeEvents, DeviceLifecycleEvents or DeviceConnectionStateEvents), a condition in Azure's routing query language (default \"true\"), one endpoint (a routing_endpoints name, or \"events\" for the built-in telemetry stream) and whether it is enabled. A condition that does not parse stops the router at cold start with its line and column; `hubctl route check` finds it before apply."
  type = list(object({
    name      = string
    source    = optional(string, "DeviceMessages")
    condition = optional(string, "true")
    endpoint  = string
    enabled   = optional(bool, true)
  }))
  default = []

  validation {
    condition     = length(var.routes) <= 100 && length(distinct([for r in var.routes : r.name])) == length(var.routes)
    error_message = "At most 100 routes, with unique names."
  }
  validation {
    condition     = alltrue([for r in var.routes : can(regex("^[A-Za-z0-9._-]{1,64}$", r.name))])
    error_message = "Route names are 1-64 letters, digits, '.', '_' or '-'."
  }
  validation {
    condition     = alltrue([for r in var.routes : contains(["DeviceMessages", "TwinChangeEvents", "DeviceLifecycleEvents", "DeviceConnectionStateEvents"], r.source)])
    error_message = "A route's source is DeviceMessages, TwinChangeEvents, DeviceLifecycleEvents or DeviceConnectionStateEvents."
  }
  validation {
    condition     = alltrue([for r in var.routes : r.source == "DeviceMessages" || !contains(["events", "archive"], r.endpoint)])
    error_message = "Routes of twin change, lifecycle and connection-state events go to custom endpoints (queues, topics, streams, buses): the built-in endpoint and the archive hold device messages."
  }
  validation {
    condition     = alltrue([for r in var.routes : r.endpoint == "events" || contains(keys(var.routing_endpoints), r.endpoint) || (r.endpoint == "archive" && var.archive.enabled)])
    error_message = "Each route's endpoint must be \"events\", \"archive\" (with archive.enabled) or a name in routing_endpoints."
  }
  validation {
    condition     = length(jsonencode(var.routes)) + length(jsonencode(var.routing_endpoints)) + length(jsonencode(var.routing_enrichments)) <= 3000
    error_message = "The routing configuration travels in the router's environment (Lambda allows 4 KB in all): keep routes, endpoints and enrichments within 3,000 characters of JSON."
  }
}

variable "routing_enrichments" {
  description = "Enrichments (Azure's): key, value (a static text, $iothubname, or a twin path such as $twin.tags.site) and the custom endpoints whose messages get it as an application property."
  type = list(object({
    key       = string
    value     = string
    endpoints = list(string)
  }))
  default = []

  validation {
    condition     = length(var.routing_enrichments) <= 10
    error_message = "At most 10 enrichments, as Azure."
  }
  validation {
    condition     = alltrue(flatten([for e in var.routing_enrichments : [for n in e.endpoints : contains(keys(var.routing_endpoints), n) || (n == "archive" && var.archive.enabled)]]))
    error_message = "Enrichments name custom endpoints (the built-in endpoint is written before routing, so it is never enriched)."
  }
}

variable "routing_fallback" {
  description = "Azure's fallback route: count messages no route matches as routed to the built-in endpoint (the telemetry stream holds every message either way; see docs/routing.md)."
  type        = bool
  default     = true
}

variable "routing_max_attempts" {
  description = "Attempts per endpoint (with backoff) before a routed message is dead-lettered."
  type        = number
  default     = 4

  validation {
    condition     = var.routing_max_attempts >= 1 && var.routing_max_attempts <= 20
    error_message = "routing_max_attempts must be between 1 and 20."
  }
}

variable "routing_batch_size" {
  description = "Records per router invocation from the telemetry stream."
  type        = number
  default     = 100

  validation {
    condition     = var.routing_batch_size >= 1 && var.routing_batch_size <= 10000
    error_message = "routing_batch_size must be between 1 and 10000."
  }
}

variable "archive" {
  description = "The cold-path archive (Azure's storage endpoint on S3): when enabled, a bucket, the endpoint `archive` that routes may name, and the archiver writing what they route there as gzipped JSON lines, one object per batch (at most batch_seconds of records, up to batch_records), named by file_name_format. retention_days (0: keep) expires objects; athena adds a Glue table over the default format with partition projection."
  type = object({
    enabled          = optional(bool, false)
    batch_seconds    = optional(number, 300)
    batch_records    = optional(number, 10000)
    file_name_format = optional(string, "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}")
    retention_days   = optional(number, 0)
    athena           = optional(bool, true)
  })
  default = {}

  validation {
    condition     = var.archive.batch_seconds >= 0 && var.archive.batch_seconds <= 300
    error_message = "archive.batch_seconds is 0 to 300 (the Kinesis mapping's longest batching window)."
  }
  validation {
    condition     = var.archive.batch_records >= 1 && var.archive.batch_records <= 10000
    error_message = "archive.batch_records is 1 to 10000."
  }
  validation {
    condition     = alltrue([for t in ["{iothub}", "{partition}", "{YYYY}", "{MM}", "{DD}", "{HH}", "{mm}"] : length(split(t, var.archive.file_name_format)) == 2]) && !startswith(var.archive.file_name_format, "/")
    error_message = "archive.file_name_format holds each of {iothub} {partition} {YYYY} {MM} {DD} {HH} {mm} exactly once, and is relative."
  }
  validation {
    condition     = var.archive.retention_days >= 0
    error_message = "archive.retention_days is 0 (keep) or more."
  }
  validation {
    condition     = !(var.archive.athena && var.archive.enabled) || var.archive.file_name_format == "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}"
    error_message = "The Athena table projects partitions of the default file_name_format: keep it, or set archive.athena = false."
  }
}

variable "registry_id_index_complete" {
  description = "Whether every registered device is in the device id index, so searches by id prefix (STARTSWITH(deviceId, ...)) read only the devices they match. Devices enter the index when created or updated; a deployment made before the index existed (2026-12-02) sets this only after updating each device once (`hubctl device export` then `hubctl device import --mode update`, docs/queries.md). Until then such searches read the whole registry: slower, never incomplete."
  type        = bool
  default     = false
}
