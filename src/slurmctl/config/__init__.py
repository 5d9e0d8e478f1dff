"""Job configuration: models and the loader."""

from slurmctl.config.loader import config_json_schema, load_config
from slurmctl.config.models import JobConfig

__all__ = ["JobConfig", "config_json_schema", "load_config"]
