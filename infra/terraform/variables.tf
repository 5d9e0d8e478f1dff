variable "bucket" {
  description = "S3 bucket for batches, manifests and results (backend.bucket)"
  type        = string
}

variable "table_prefix" {
  description = "DynamoDB tables are <prefix>jobs, <prefix>tasks, <prefix>progress, <prefix>limits, <prefix>alerts (backend.table_prefix)"
  type        = string
  default     = "slurmctl-"
}

variable "queue_prefix" {
  description = "SQS queues are <prefix>work, <prefix>retry, <prefix>work-dlq (backend.queue_prefix)"
  type        = string
  default     = "slurmctl-"
}

variable "coordinator_principals" {
  description = "ARNs allowed to assume the coordinator role (users / CI that submit jobs)"
  type        = list(string)
  default     = []
}

variable "worker_principals" {
  description = "ARNs allowed to assume the worker role (e.g. the cluster's OIDC / instance role)"
  type        = list(string)
  default     = []
}
