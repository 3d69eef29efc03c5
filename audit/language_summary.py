"""Per-language figures for summary.json and the report: rows, flags and not-applicable counts by
caption language, and by the language of the text read from images."""

from __future__ import annotations

from collections import Counter, defaultdict

from audit.runfolder import RunFolder
from audit.schemas import LanguageCounts

NO_CAPTION = "none"  # image-only rows: no caption language to count them under


def language_counts(
    run: RunFolder, shard_ids: list[str]
) -> tuple[dict[str, LanguageCounts], dict[str, LanguageCounts]]:
    """(by caption language, by image-text language), read a shard at a time."""
    rows: dict[str, Counter[str]] = {"caption": Counter(), "ocr": Counter()}
    flagged: dict[str, Counter[str]] = {"caption": Counter(), "ocr": Counter()}
    reasons: dict[str, dict[str, Counter[str]]] = {
        "caption": defaultdict(Counter),
        "ocr": defaultdict(Counter),
    }
    na: dict[str, dict[str, Counter[str]]] = {"caption": defaultdict(Counter), "ocr": defaultdict(Counter)}
    for s in shard_ids:
        scores = run.read_parquet(
            run.scores(s),
            columns=["row_id", "caption_language", "ocr_language", "ocr_text", "not_applicable"],
        )
        flags = run.read_parquet(run.part("flags", s), columns=["row_id", "reasons"])
        fired = dict(
            zip(flags.column("row_id").to_pylist(), flags.column("reasons").to_pylist(), strict=True)
        )
        for row_id, lang, ocr_lang, ocr_text, skipped in zip(
            *(
                scores.column(c).to_pylist()
                for c in ("row_id", "caption_language", "ocr_language", "ocr_text", "not_applicable")
            ),
            strict=True,
        ):
            sides = [("caption", lang or NO_CAPTION)]
            if ocr_text:
                sides.append(("ocr", ocr_lang or NO_CAPTION))
            for side, key in sides:
                rows[side][key] += 1
                if row_id in fired:
                    flagged[side][key] += 1
                    reasons[side][key].update(fired[row_id])
                for name in skipped or []:
                    # ocr:<scorer> belongs to the image text; the rest (and "ocr" itself) to the row
                    if (side == "ocr") == name.startswith("ocr:"):
                        na[side][key][name] += 1

    def build(side: str) -> dict[str, LanguageCounts]:
        return {
            key: LanguageCounts(
                rows=n,
                rows_flagged=flagged[side][key],
                flags_by_reason=dict(sorted(reasons[side][key].items())),
                not_applicable=dict(sorted(na[side][key].items())),
            )
            for key, n in sorted(rows[side].items(), key=lambda kv: (-kv[1], kv[0]))
        }

    return build("caption"), build("ocr")
