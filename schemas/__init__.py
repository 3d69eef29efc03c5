"""audit.schemas: installed from the top-level `schemas/` folder (see pyproject's package-dir)."""

# The folder sits at the repository root, so `import schemas` from a checkout would otherwise succeed
# and shadow the unrelated PyPI package of that name. There is one namespace: `audit`.
if __name__ != "audit.schemas":
    raise ImportError("this folder is the audit.schemas package: import audit.schemas, not schemas")

from audit.schemas.inputs import (
    IMG2DATASET_PARQUET_SCHEMA,
    INPUT_FIELDS,
    INPUT_SCHEMA_VERSION,
    LAION_METADATA_SCHEMA,
    REQUIRED_FIELDS,
    WEBDATASET_SIDECAR_SCHEMA,
)
from audit.schemas.outputs import (
    FLAGS_SCHEMA,
    INGESTED_SCHEMA,
    NEIGHBOURS_SCHEMA,
    OUTPUT_SCHEMA_VERSION,
    QUARANTINE_REASONS,
    QUARANTINE_SCHEMA,
    SCORE_COLUMNS,
    SCORES_SCHEMA,
    SEVERITIES,
    SOURCE_SCORE_COLUMNS,
    ScoreColumn,
)
from audit.schemas.run_files import (
    CLIP_RANDOM_WARNING,
    LanguageCounts,
    Manifest,
    ModelRecord,
    ShardRecord,
    ShardTallies,
    Summary,
)

__all__ = [
    "CLIP_RANDOM_WARNING",
    "FLAGS_SCHEMA",
    "IMG2DATASET_PARQUET_SCHEMA",
    "INGESTED_SCHEMA",
    "INPUT_FIELDS",
    "INPUT_SCHEMA_VERSION",
    "LAION_METADATA_SCHEMA",
    "NEIGHBOURS_SCHEMA",
    "OUTPUT_SCHEMA_VERSION",
    "QUARANTINE_REASONS",
    "QUARANTINE_SCHEMA",
    "REQUIRED_FIELDS",
    "SCORES_SCHEMA",
    "SCORE_COLUMNS",
    "SEVERITIES",
    "SOURCE_SCORE_COLUMNS",
    "WEBDATASET_SIDECAR_SCHEMA",
    "LanguageCounts",
    "Manifest",
    "ModelRecord",
    "ScoreColumn",
    "ShardRecord",
    "ShardTallies",
    "Summary",
]
