"""The audit config: YAML validated by pydantic, plus ``key.path=value`` overrides."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from audit.errors import AuditError, ConfigError

Device = Literal["auto", "cpu", "cuda"]
TextScorerName = Literal["profanity_check", "hatesonar", "detoxify", "lexicon", "pii"]
ImageScorerName = Literal["opennsfw", "clip_nsfw", "nudenet"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClipSettings(_Section):
    # open_clip model name ("ViT-B-32") or "local-dir:/path" holding open_clip_config.json + weights
    model: str = "ViT-B-32"
    # open_clip pretrained tag ("laion2b_s34b_b79k") or a local checkpoint file; null = no weights
    pretrained: str | None = "laion2b_s34b_b79k"
    # Random weights only when asked for: every CLIP-based score is then marked not meaningful.
    allow_random_weights: bool = False
    batch_size: int = Field(32, ge=1)
    seed: int = 0
    # zero-shot concept probes: a packaged prompt bank name or a YAML file; null turns them off
    concepts: str | None = "concepts"
    # CLIP-embed the captions of text-only rows (no image, no precomputed embedding) on a CPU: the
    # text tower runs at ~18 captions/s there, so a metadata audit asks for it; on CUDA they always
    # are. Without it, the summary lists the analyses that did not run (caption neighbours).
    encode_captions_on_cpu: bool = False


class DetoxifySettings(_Section):
    model_type: Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"] = (
        "original"
    )
    checkpoint: str | None = None  # a local Detoxify .ckpt; loads without network
    huggingface_config_path: str | None = None  # folder with the transformers config + tokenizer files
    batch_size: int = Field(32, ge=1)


class TextSettings(_Section):
    scorers: tuple[TextScorerName, ...] = ("profanity_check", "hatesonar", "lexicon", "pii")
    # captions per scorer call: each call of the sklearn/ONNX scorers has a fixed cost (~10 ms for
    # profanity-check), so a batch's captions go in one call; Detoxify batches on its own
    # (detoxify.batch_size) and hatesonar in runs of 64
    batch_size: int = Field(8192, ge=1)
    lexicons: str | None = None  # folder of slur/sexual/violence .txt lists; None = packaged
    detoxify: DetoxifySettings = DetoxifySettings()


class OcrSettings(_Section):
    """Text inside images (rapidocr, PP-OCRv6): read it, then run the text scorers on it as a second
    text side (``ocr_*`` columns). Seconds per text-heavy image on a CPU: turn it off for a quick
    pass (``images.ocr.enabled=false``); the cascade runs it in its expensive tier."""

    enabled: bool = True
    max_side: int = Field(640, ge=32, le=4096)  # detection input's longest side, pixels
    min_line_confidence: float = Field(0.5, ge=0, le=1)  # recognised lines below it are dropped
    max_chars: int = Field(2000, ge=1)  # text kept per image


class ImageSettings(_Section):
    # PIL's own decompression-bomb limit; larger images are quarantined, not decoded.
    max_pixels: int = Field(89_478_485, ge=1)
    # On CUDA, decode JPEGs on the GPU (torchvision/nvJPEG), other images and failures with PIL.
    # Pixels can differ from PIL's by rounding, so it is part of the scoring hash. No effect on CPU.
    gpu_decode: bool = True
    scorers: tuple[ImageScorerName, ...] = ("opennsfw", "nudenet")
    batch_size: int = Field(32, ge=1)
    # LAION's CLIP-embedding NSFW head (torch state dict); required when clip_nsfw is listed
    clip_nsfw_weights: str | None = None
    clip_nsfw_hidden: tuple[int, ...] = (1024, 2048, 1024, 256)
    # known-bad hash lists (see docs/hash-lists.md); a match is never rendered anywhere
    known_bad_lists: tuple[str, ...] = ()
    phash_max_distance: int = Field(6, ge=0, le=64)
    # PDQ (256-bit): the PDQ authors' recommended match threshold is 31 differing bits
    pdq_max_distance: int = Field(31, ge=0, le=256)
    # PDQ hashes of featureless images (quality under this) are recorded but never matched
    pdq_min_quality: int = Field(50, ge=0, le=100)
    ocr: OcrSettings = OcrSettings()


class LanguageSettings(_Section):
    """Language detection (fastText lid.176) of captions and image text; scorers outside their
    languages give null and ``not_applicable``. Below ``min_confidence`` a text is ``und``
    (undetermined) and every scorer runs on it."""

    min_confidence: float = Field(0.5, ge=0, le=1)


class DaskSettings(_Section):
    """Where the audit runs. A LocalCluster started here listens on loopback only by default:

    - ``host``: interface of the scheduler, nannies and workers (default ``127.0.0.1``);
    - ``dashboard_address``: ``HOST:PORT`` of the Dask dashboard (default ``127.0.0.1:0``, a free
      loopback port; the printed link is where it listens); ``null`` turns the dashboard off. A
      port alone (``:8787``) or ``0.0.0.0:PORT`` exposes it on every interface, without a login.

    Neither applies when ``scheduler`` joins an existing cluster, nor changes any score.
    """

    scheduler: str | None = None  # address of an existing cluster; None starts a LocalCluster
    host: str = Field("127.0.0.1", min_length=1)
    dashboard_address: str | None = "127.0.0.1:0"
    n_workers: int | None = Field(None, ge=1)  # None: sized to the machine
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"
    retries: int = Field(2, ge=0)
    # rows per batch inside a shard task: memory follows the batch, not the shard
    batch_rows: int = Field(1024, ge=1)
    # the same for shards that carry no image bytes (LAION metadata, clip-retrieval): a row is a
    # caption and two embeddings (~4 KB), and fewer, larger batches spend less per batch
    batch_rows_without_images: int = Field(8192, ge=1)

    @field_validator("dashboard_address")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        port = (value or "0").rpartition(":")[2]
        if value is not None and (":" not in value or not port.isdigit() or int(port) > 65535):
            raise ValueError("must look like HOST:PORT (127.0.0.1:0 picks a free loopback port), or null")
        return value


class EnergySettings(_Section):
    cpu_watts_per_core: float = Field(12.0, gt=0)  # used when RAPL counters cannot be read
    gpu_watts: float = Field(350.0, ge=0)  # H100 PCIe board power, counted while a GPU is used
    grid_gco2e_per_kwh: float = Field(475.0, ge=0)  # IEA world average; set your grid's


class NeighbourSettings(_Section):
    enabled: bool = True
    near_duplicate_similarity: float = Field(0.95, gt=0, le=1)  # cosine of image embeddings
    caption_duplicate_similarity: float = Field(0.97, gt=0, le=1)  # cosine of text embeddings
    k: int = Field(8, ge=1)  # neighbours searched per row
    nprobe: int = Field(2, ge=1)  # IVF lists visited per query (flat indexes ignore it)
    outlier_k: int = Field(5, ge=1)  # outlier score: 1 - cosine to the k-th neighbour
    clusters: int | None = Field(None, ge=1)  # k-means clusters; None: about sqrt(rows) / 2
    memory_budget_gb: float = Field(4.0, gt=0)  # picks Flat, IVF-SQ8 or IVF-PQ


class RemovalSettings(_Section):
    """Which flagged rows go on RUN/report/removal_list.* (docs/removal-lists.md). A row whose latest
    decision is false_positive never goes on it; a never-render row (known-bad match) always does."""

    confirmed: bool = True  # rows whose latest reviewer decision is confirm_harmful
    min_severity: Literal["info", "low", "medium", "high", "critical"] | None = "medium"  # null: none
    rules: tuple[str, ...] = ()  # flags fired by any of these rule ids, whatever their severity


HarmCategory = Literal["sexual", "violence", "hate", "harassment", "pii"]
# The harm each rule's flag claims, by reason code (or rule id, which wins): what its precision and
# recall are measured against. Never-render reasons (known-bad-hash, csam-risk) are not labelled.
DEFAULT_RULE_CATEGORIES: dict[str, HarmCategory] = {
    "hateful-caption": "hate", "slur": "hate", "hate-symbol": "hate",
    "nsfw-image-toxic-caption": "sexual", "nsfw-image": "sexual", "source-nsfw": "sexual",
    "sexual-terms": "sexual", "violent-terms": "violence", "violent-image": "violence",
    "offensive-caption": "harassment", "pii": "pii",
}  # fmt: skip


class EvaluationSettings(_Section):
    """`mmaudit evaluate`: the labelling sample's design and the estimates (docs/evaluation.md)."""

    seed: int = 0
    flagged_per_stratum: int = Field(40, ge=1)  # rows drawn per (rule, score band) of flagged rows
    flagged_bands: int = Field(2, ge=1, le=10)  # bands per rule: quantiles of its first score
    unflagged_per_stratum: int = Field(40, ge=1)  # rows drawn per (score, near-miss band) of unflagged rows
    unflagged_far: int = Field(100, ge=1)  # rows drawn from unflagged rows far below every threshold
    # an unflagged row is a near miss of a score at or above these shares of the score's threshold
    near_miss: tuple[float, ...] = (0.5, 0.8)
    dev_fraction: float = Field(0.5, gt=0, lt=1)  # labels that choose thresholds; the rest report
    double_label_fraction: float = Field(0.2, ge=0, le=1)  # sampled rows a second reviewer labels too
    target_precision: float = Field(0.9, gt=0, le=1)  # for the suggested threshold of each rule
    confidence: float = Field(0.95, gt=0, lt=1)
    bootstrap: int = Field(1000, ge=100)  # resamples for F1's and the suggested threshold's intervals
    stability_seeds: int = Field(5, ge=5)  # re-drawn dev/test splits the spread of each estimate is over
    # reason code or rule id -> harm; merged over DEFAULT_RULE_CATEGORIES, null leaves a rule unmeasured
    categories: dict[str, HarmCategory | None] = Field(default_factory=lambda: dict(DEFAULT_RULE_CATEGORIES))

    @field_validator("categories", mode="before")
    @classmethod
    def _over_defaults(cls, value: object) -> object:
        return {**DEFAULT_RULE_CATEGORIES, **value} if isinstance(value, dict) else value

    @field_validator("near_miss")
    @classmethod
    def _increasing_shares(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 < v < 1 for v in value) or list(value) != sorted(set(value)):
            raise ValueError("must be increasing shares of a threshold, each between 0 and 1: [0.5, 0.8]")
        return value


class CandidateCondition(_Section):
    """A cheap score reaching this makes a row a cascade candidate (same form as a rule condition)."""

    score: str
    op: Literal[">=", ">", "<=", "<", "==", "!=", "contains"]
    value: bool | float | str

    @field_validator("score")
    @classmethod
    def _known_score(cls, value: str) -> str:
        from audit.schemas import SCORE_COLUMNS, SOURCE_SCORE_COLUMNS

        if value not in SCORE_COLUMNS and value not in SOURCE_SCORE_COLUMNS:
            raise ValueError(f"unknown score {value!r}")
        return value


def _default_candidates() -> tuple[CandidateCondition, ...]:
    rows = [
        ("text_offensive_prob", ">=", 0.3),
        ("lexicon_slur_hits", ">=", 1),
        ("lexicon_sexual_hits", ">=", 1),
        ("lexicon_violence_hits", ">=", 1),
        ("known_bad_match", "==", True),
        ("clip_nsfw_prob", ">=", 0.3),
        ("source_punsafe", ">=", 0.3),
        ("source_nsfw", "==", "NSFW"),
        ("source_nsfw", "==", "UNSURE"),
        *(("concept_hits", "contains", c) for c in ("sexual", "violence", "hate_symbols", "minors")),
    ]
    return tuple(CandidateCondition(score=s, op=o, value=v) for s, o, v in rows)  # type: ignore[arg-type]


class CascadeSettings(_Section):
    """Cheap scorers on every row, expensive ones (hatesonar, Detoxify, open_nsfw, NudeNet, OCR)
    only on candidates and a seeded uniform audit sample, from which the summary estimates the
    flags the cascade missed (docs/cascade.md). Off by default: every scorer on every row."""

    enabled: bool = False
    audit_fraction: float = Field(0.01, ge=0, le=1)  # uniform sample where every scorer runs
    seed: int = 0
    candidate_if: tuple[CandidateCondition, ...] = Field(default_factory=_default_candidates)


class AuditConfig(_Section):
    name: str | None = None
    shards: tuple[str, ...] = ()
    out: str = "runs/audit"
    device: Device = "auto"
    # Never touch a model hub: load weights only from local files and caches.
    offline: bool = True
    rules: str = "default"  # a packaged rule set name or a YAML file
    clip: ClipSettings = ClipSettings()
    text: TextSettings = TextSettings()
    images: ImageSettings = ImageSettings()
    languages: LanguageSettings = LanguageSettings()
    dask: DaskSettings = DaskSettings()
    energy: EnergySettings = EnergySettings()
    neighbours: NeighbourSettings = NeighbourSettings()
    removal: RemovalSettings = RemovalSettings()
    cascade: CascadeSettings = CascadeSettings()
    evaluation: EvaluationSettings = EvaluationSettings()

    @property
    def run_name(self) -> str:
        return self.name or Path(self.out.rstrip("/")).name

    def scoring_dict(self) -> dict[str, Any]:
        """The part of the config that changes scores (not where inputs and outputs live)."""
        d = self.model_dump(mode="json")
        for k in ("name", "shards", "out", "energy", "neighbours", "removal", "evaluation"):
            d.pop(k)
        # threads per worker reach the scorers (onnxruntime); the rest of dask is placement only
        d["dask"] = {"threads_per_worker": self.dask.threads_per_worker}
        return d

    def scoring_hash(self) -> str:
        blob = json.dumps(self.scoring_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        section: type[BaseModel] = AuditConfig
        for part in first["loc"][:-1]:
            section = section.model_fields[str(part)].annotation  # type: ignore[assignment]
        allowed = ", ".join(section.model_fields)
        return f"{source}: unknown config key '{loc}' (allowed here: {allowed})"
    return f"{source}: invalid value for '{loc}': {first['msg']}"


def _set_path(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    d[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` -> (key path, YAML-typed value); a malformed one names itself."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not all(key.split(".")):  # '', 'a..b', '.a': an empty part names no key
        raise ConfigError(f"override '{text}': '{key}' is not a key path like clip.batch_size")
    try:
        return key, safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': value is not valid YAML ({_yaml_problem(e)})") from None


# libyaml's loader where PyYAML was built with it: the same safe subset of YAML, ~6x faster than
# the pure-Python one (measured: 2.5 ms vs 16 ms for the default rules, parsed four times a run)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> object:
    """``yaml.safe_load`` through libyaml when available."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader, C or Python


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's messages span lines (context, a caret drawing); one line of them is enough."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def read_yaml(path: str | Path, what: str, error: type[AuditError]) -> tuple[str, object]:
    """A YAML file's text and data; a missing, unreadable or invalid file raises ``error`` naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: cannot read the {what} file (not UTF-8 text at byte {e.start})") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what} file ({e.strerror or type(e).__name__})") from None
    try:
        return text, safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {_yaml_problem(e)}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AuditConfig:
    """Read a YAML config (or the defaults), apply dotted overrides, validate."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        _, loaded = read_yaml(path, "config", ConfigError)
        if loaded is not None and not isinstance(loaded, dict):  # empty (or comments only): defaults
            raise ConfigError(f"{path}: the config must be a mapping of keys, not {yaml_kind(loaded)}")
        data = loaded or {}
    for key, value in (overrides or {}).items():
        _set_path(data, key, value)
    try:
        return AuditConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def yaml_kind(value: object) -> str:
    """What a YAML document holds, for messages: 'a list', 'a number', ..."""
    kinds = {list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def packaged_file(folder: str, name: str) -> Path:
    """A YAML file shipped in audit.pipelines (rules, configs, prompt banks)."""
    return Path(str(resources.files("audit.pipelines").joinpath(folder, name)))


SectionT = TypeVar("SectionT", bound=BaseModel)


def resolve_section(
    manifest_config: Mapping[str, Any],
    name: str,
    model: type[SectionT],
    config_path: str | None,
    overrides: Mapping[str, Any] | None,
    *,
    usage: str,
    nested: bool = True,
) -> SectionT:
    """A finished run's ``name:`` config section (its defaults for runs written before the section
    existed), replaced by ``config_path``'s section when given, then ``name.*`` overrides; a one-line
    ConfigError when invalid. ``usage`` says which keys the command takes, for the error; ``nested``
    allows overrides of nested keys (``name.a.b``)."""
    section: dict[str, Any] = dict(manifest_config.get(name) or {})
    if config_path is not None:
        section = getattr(load_config(config_path), name).model_dump(mode="json")
    for key, value in (overrides or {}).items():
        head, _, rest = key.partition(".")
        if head != name or not rest or (not nested and "." in rest):
            raise ConfigError(f"override '{key}': {usage}")
        target = section
        *parents, last = rest.split(".")
        for part in parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{key}': '{part}' is not a section")
            target = child
        target[last] = value
    try:
        return model.model_validate(section)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            raise ConfigError(f"unknown config key '{name}.{loc}' (allowed here: {allowed})") from None
        raise ConfigError(f"invalid value for '{name}.{loc}': {first['msg']}") from None
