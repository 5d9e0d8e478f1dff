# The resources of the slurmctl aws backend. Must match src/slurmctl/storage/aws/schema.py, which
# `slurmctl aws bootstrap` creates; tests/aws/test_terraform_drift.py compares the two.

locals {
  state_tables = toset(["jobs", "tasks", "progress", "limits", "alerts"])
}

# --- S3 ---------------------------------------------------------------------------------------

resource "aws_s3_bucket" "data" {
  bucket = var.bucket
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    id     = "abort-incomplete-multipart"
    status = "Enabled"
    filter {
      prefix = ""
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }
}

# --- DynamoDB ---------------------------------------------------------------------------------

resource "aws_dynamodb_table" "state" {
  for_each     = local.state_tables
  name         = "${var.table_prefix}${each.key}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  attribute {
    name = "state"
    type = "S"
  }
  attribute {
    name = "k"
    type = "S"
  }

  global_secondary_index {
    name            = "job_state"
    hash_key        = "pk"
    range_key       = "state"
    projection_type = "ALL"
  }
  global_secondary_index {
    name            = "by_state"
    hash_key        = "state"
    range_key       = "k"
    projection_type = "ALL"
  }

  server_side_encryption {
    enabled = true
  }
  point_in_time_recovery {
    enabled = true
  }
}

# --- SQS --------------------------------------------------------------------------------------

resource "aws_sqs_queue" "work_dlq" {
  name                      = "${var.queue_prefix}work-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "work" {
  name                       = "${var.queue_prefix}work"
  visibility_timeout_seconds = 120
  message_retention_seconds  = 1209600
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.work_dlq.arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue" "retry" {
  name                       = "${var.queue_prefix}retry"
  visibility_timeout_seconds = 120
  delay_seconds              = 30
  message_retention_seconds  = 1209600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.work_dlq.arn
    maxReceiveCount     = 5
  })
}
