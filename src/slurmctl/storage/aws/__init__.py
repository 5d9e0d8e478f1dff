"""The AWS backend: objects in S3, state in DynamoDB, queues in SQS. Needs ``slurmctl[aws]``.

See docs/aws.md for setup (``slurmctl aws bootstrap`` or infra/terraform) and the guarantees.
"""

from slurmctl.storage.aws.backend import aws_backend
from slurmctl.storage.aws.objects import S3ObjectStore
from slurmctl.storage.aws.settings import AwsSettings
from slurmctl.storage.aws.state import DynamoStateStore

__all__ = ["AwsSettings", "DynamoStateStore", "S3ObjectStore", "aws_backend"]
