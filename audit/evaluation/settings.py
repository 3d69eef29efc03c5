"""The ``evaluation:`` settings of a command: the run's own section, a config file's, ``--set`` keys.

The keys that shape the sample (DESIGN_KEYS) are recorded in design.json when it is drawn; a report
that asks for other values of them is refused rather than mixing two designs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.config import EvaluationSettings, resolve_section
from audit.errors import ConfigError

DESIGN_KEYS = ("seed", "flagged_per_stratum", "flagged_bands", "unflagged_per_stratum", "unflagged_far",
               "near_miss", "dev_fraction", "double_label_fraction")  # fmt: skip


def resolve_settings(
    manifest_config: Mapping[str, Any],
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EvaluationSettings:
    """The run's ``evaluation:`` section (defaults for runs audited before it existed), replaced by
    ``config_path``'s when given, then ``evaluation.*`` overrides; one-line ConfigError when invalid."""
    return resolve_section(
        manifest_config, "evaluation", EvaluationSettings, config_path, overrides,
        usage="evaluate takes evaluation.* keys only (evaluation.seed=3)",
    )  # fmt: skip


def design_settings(settings: EvaluationSettings) -> dict[str, Any]:
    dumped = settings.model_dump(mode="json")
    return {k: dumped[k] for k in DESIGN_KEYS}


def report_settings(
    manifest_config: Mapping[str, Any],
    recorded: Mapping[str, Any],
    design_path: str,
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EvaluationSettings:
    """Settings for estimates on a drawn sample: the design keys are the sample's own (design.json);
    a config file's design keys are for `evaluate sample` only, and a ``--set`` of one that differs
    from the sample's is a ConfigError naming it."""
    settings = resolve_settings(manifest_config, config_path, overrides)
    for key, value in (overrides or {}).items():
        name = key.partition(".")[2]
        if name in DESIGN_KEYS and name in recorded and design_settings(settings)[name] != recorded[name]:
            raise ConfigError(
                f"override '{key}={value}': the sample in {design_path} was drawn with {name}="
                f"{recorded[name]!r}; draw a new one with `mmaudit evaluate sample --replace`"
            )
    merged = {**settings.model_dump(mode="json"), **{k: v for k, v in recorded.items() if k in DESIGN_KEYS}}
    return EvaluationSettings.model_validate(merged)
