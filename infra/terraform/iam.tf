# Least privilege: the coordinator creates jobs and reads everything back; workers read batches,
# write results and update task/limit records, but never delete tables, queues or other jobs' data
# beyond their own result keys. Neither role can change bucket or table settings.

locals {
  table_arns = concat(
    [for t in aws_dynamodb_table.state : t.arn],
    [for t in aws_dynamodb_table.state : "${t.arn}/index/*"],
  )
  queue_arns = [aws_sqs_queue.work.arn, aws_sqs_queue.retry.arn, aws_sqs_queue.work_dlq.arn]
}

data "aws_iam_policy_document" "coordinator_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.coordinator_principals
    }
  }
}

data "aws_iam_policy_document" "worker_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.worker_principals
    }
  }
}

data "aws_iam_policy_document" "coordinator" {
  statement {
    sid       = "Objects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.data.arn}/jobs/*"]
  }
  statement {
    sid       = "List"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }
  statement {
    sid = "State"
    actions = [
      "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan",
    ]
    resources = local.table_arns
  }
  statement {
    sid       = "Queues"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:PurgeQueue"]
    resources = local.queue_arns
  }
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "ReadInputs"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/jobs/*"]
  }
  statement {
    sid     = "WriteResults"
    actions = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [
      "${aws_s3_bucket.data.arn}/jobs/*/results/*",
      "${aws_s3_bucket.data.arn}/jobs/*/checkpoints/*",
      "${aws_s3_bucket.data.arn}/jobs/*/logs/*",
    ]
  }
  statement {
    sid       = "List"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }
  statement {
    sid       = "State"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
    resources = local.table_arns
  }
  statement {
    sid = "Queues"
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage",
      "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
    ]
    resources = local.queue_arns
  }
}

resource "aws_iam_role" "coordinator" {
  name               = "${var.table_prefix}coordinator"
  assume_role_policy = data.aws_iam_policy_document.coordinator_trust.json
}

resource "aws_iam_role_policy" "coordinator" {
  name   = "slurmctl-coordinator"
  role   = aws_iam_role.coordinator.id
  policy = data.aws_iam_policy_document.coordinator.json
}

resource "aws_iam_role" "worker" {
  name               = "${var.table_prefix}worker"
  assume_role_policy = data.aws_iam_policy_document.worker_trust.json
}

resource "aws_iam_role_policy" "worker" {
  name   = "slurmctl-worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}
