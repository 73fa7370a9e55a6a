"""Configuration: one TOML file, frozen dataclasses, every default declared once with its reason.

Secrets and URLs can come from the environment (`RATER_DATABASE_URL`, `RATER_REDIS_URL`,
`RATER_ESL_PASSWORD`), which wins over the file. Validation names the key and what is wrong.

- `sections`: the dataclasses, one per TOML section, each field with its default and doc;
  `Config` gathers them; `hangup_cause` the cause configured for a refusal reason.
- `urls`: a multi-host Redis URL's hosts and credentials, a URL's password masked.
- `loading`: `load_config` reads the file, converts each key to its field's type, applies the
  environment, then validates.
- `sanity`: `validate`, the checks across fields.
"""

from rater.config.loading import DEFAULT_CONFIG_PATH, load_config
from rater.config.sanity import REFUSAL_REASONS, validate
from rater.config.sections import (
    Config,
    DatabaseConfig,
    DecisionSocketConfig,
    FlusherConfig,
    FreeSwitchNode,
    LogConfig,
    MetricsConfig,
    RatingConfig,
    RedisConfig,
    RenewalConfig,
    SnapshotConfig,
    SwitchRecordsConfig,
    hangup_cause,
)
from rater.config.urls import mask_url

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "REFUSAL_REASONS",
    "Config",
    "DatabaseConfig",
    "DecisionSocketConfig",
    "FlusherConfig",
    "FreeSwitchNode",
    "LogConfig",
    "MetricsConfig",
    "RatingConfig",
    "RedisConfig",
    "RenewalConfig",
    "SnapshotConfig",
    "SwitchRecordsConfig",
    "hangup_cause",
    "load_config",
    "mask_url",
    "validate",
]
