output "backend_block" {
  description = "Paste into job files as backend:"
  value = {
    kind         = "aws"
    bucket       = aws_s3_bucket.data.bucket
    table_prefix = var.table_prefix
    queue_prefix = var.queue_prefix
  }
}

output "coordinator_role_arn" {
  value = aws_iam_role.coordinator.arn
}

output "worker_role_arn" {
  value = aws_iam_role.worker.arn
}
