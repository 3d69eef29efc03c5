"""The embedded sample corpus: small, seeded, deterministic shards that exercise every stage.

Real photographs come from scikit-image and scikit-learn (shipped offline in those packages);
the rest are generated. Every planted case is listed in ``PLANTED`` so tests and users can check
what the audit should find. Written as img2dataset-style parquet (with ``jpg`` bytes), as a
webdataset tar with its sidecar parquet, and as a LAION metadata parquet (URLs only).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from audit.schemas import IMG2DATASET_PARQUET_SCHEMA, LAION_METADATA_SCHEMA, WEBDATASET_SIDECAR_SCHEMA

SEED = 20211005  # the day Birhane et al. posted their LAION-400M audit
URL_BASE = "http://sample.mmaudit.invalid/img"

# (loader, name, matching caption)
PHOTOS: list[tuple[str, str, str]] = [
    ("skimage", "astronaut", "portrait of an astronaut in a NASA spacesuit with the American flag"),
    ("skimage", "coffee", "a cup of coffee on a saucer"),
    ("skimage", "chelsea", "a tabby cat looking at the camera"),
    ("skimage", "rocket", "a rocket on the launch pad"),
    ("skimage", "camera", "black and white photo of a man with a camera on a tripod"),
    ("skimage", "coins", "old coins on a dark background"),
    ("skimage", "moon", "the surface of the moon"),
    ("skimage", "hubble_deep_field", "hubble deep field image of distant galaxies"),
    ("skimage", "immunohistochemistry", "microscope image of stained tissue"),
    ("skimage", "stereo_motorcycle", "a red motorcycle parked indoors"),
    ("skimage", "retina", "photograph of a human retina"),
    ("skimage", "clock", "a clock on a wall"),
    ("skimage", "page", "a scanned page of printed text"),
    ("skimage", "brick", "a brick wall texture"),
    ("skimage", "grass", "close up of green grass"),
    ("skimage", "colorwheel", "a colour wheel"),
    ("sklearn", "china.jpg", "a chinese temple among trees"),
    ("sklearn", "flower.jpg", "a close up of a pink flower"),
]

# Captions carrying offensive language (profanity-check / hatesonar fire on these).
OFFENSIVE_CAPTIONS = [
    "what a dumb bitch",
    "this cat is a piece of shit",
    "stupid fucking idiot with a camera",
]
# hatesonar rates this hate speech (p_hate ~0.7): a classist slur string from the Davidson data.
HATEFUL_CAPTIONS = ["white trash redneck hillbilly"]
GENERATED_SHAPES = ["circle", "square", "triangle", "stripes"]
COLOURS = {"red": (220, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 200), "yellow": (240, 210, 30)}


@dataclass
class SampleRow:
    key: str
    caption: str | bytes | None
    image: bytes | None
    # matching, mismatched, offensive, hateful, near_duplicate, exact_duplicate, generated, known_bad,
    # malformed:<reason> (one side unusable: audited on the other), unscorable:<reason> (quarantined)
    case: str
    status: str = "success"
    error_message: str | None = None
    source: str | None = None  # which photo or shape the image is
    extra: dict = field(default_factory=dict)


def _photo(loader: str, name: str) -> np.ndarray:
    if loader == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    import skimage.data

    arr = getattr(skimage.data, name)()
    arr = arr[0] if isinstance(arr, tuple) else arr
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return arr


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _shrink(arr: np.ndarray, max_side: int = 384) -> Image.Image:
    im = Image.fromarray(arr)
    im.thumbnail((max_side, max_side))
    return im


def _shape(shape: str, colour: str, rng: np.random.Generator) -> Image.Image:
    im = Image.new("RGB", (224, 224), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    c = COLOURS[colour]
    x0, y0 = (int(v) for v in rng.integers(20, 60, size=2))
    x1, y1 = (int(v) for v in rng.integers(160, 204, size=2))
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=c)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=c)
    elif shape == "triangle":
        draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=c)
    else:
        for x in range(0, 224, 32):
            draw.rectangle((x, 0, x + 15, 223), fill=c)
    return im


def build_rows() -> list[SampleRow]:
    """All sample rows, in a fixed order; keys are stable across builds."""
    rng = np.random.default_rng(SEED)
    rows: list[SampleRow] = []
    images: dict[str, Image.Image] = {}
    for loader, name, caption in PHOTOS:
        im = _shrink(_photo(loader, name))
        images[name] = im
        rows.append(SampleRow(f"photo-{name.split('.')[0]}", caption, _jpeg(im), "matching", source=name))
    names = [p[1] for p in PHOTOS]
    captions = {p[1]: p[2] for p in PHOTOS}
    # mismatched: a photo with another photo's caption
    for i in range(6):
        a, b = names[i], names[(i + 7) % len(names)]
        rows.append(SampleRow(f"mismatch-{i}", captions[b], _jpeg(images[a]), "mismatched", source=a))
    for i, cap in enumerate(OFFENSIVE_CAPTIONS):
        rows.append(
            SampleRow(f"offensive-{i}", cap, _jpeg(images[names[i + 2]]), "offensive", source=names[i + 2])
        )
    for i, cap in enumerate(HATEFUL_CAPTIONS):
        rows.append(
            SampleRow(f"hateful-{i}", cap, _jpeg(images[names[i + 9]]), "hateful", source=names[i + 9])
        )
    # near-duplicates: re-encoded, resized, cropped copies; exact duplicates: the same bytes again
    for name in ("astronaut", "chelsea", "rocket"):
        im = images[name]
        w, h = im.size
        variants = {
            "q40": _jpeg(im, quality=40),
            "resized": _jpeg(im.resize((int(w * 0.8), int(h * 0.8)))),
            "cropped": _jpeg(im.crop((4, 4, w - 4, h - 4))),
        }
        for tag, data in variants.items():
            rows.append(
                SampleRow(f"neardup-{name}-{tag}", captions[name], data, "near_duplicate", source=name)
            )
        rows.append(SampleRow(f"exactdup-{name}", captions[name], _jpeg(im), "exact_duplicate", source=name))
    for shape in GENERATED_SHAPES:
        for colour in COLOURS:
            rows.append(
                SampleRow(
                    f"gen-{colour}-{shape}",
                    f"a {colour} {shape} on a white background",
                    _jpeg(_shape(shape, colour, rng)),
                    "generated",
                    source=f"{colour}-{shape}",
                )
            )
    rows.extend(_odd_but_valid_images(images))
    rows.extend(_caption_cases(images))
    rows.extend(_known_bad_rows(rng))
    rows.extend(_image_text_rows(images))
    rows.extend(_non_english_rows(images))
    rows.extend(_malformed_rows(images))
    return rows


def _caption_cases(images: dict[str, Image.Image]) -> list[SampleRow]:
    """Lexicon and personal-data cases on benign photos: the caption alone carries the problem."""
    cases = [
        ("lexicon-sexual-0", "nude beach photo leaked", "brick", "lexicon_sexual"),
        ("lexicon-violence-0", "massacre at the clock tower", "clock", "lexicon_violence"),
        ("pii-0", "contact jane.doe@example.com or call +1 415-555-0132", "page", "pii"),
        ("pii-1", "for sale, see owner at 1600 Pennsylvania Avenue", "stereo_motorcycle", "pii"),
        # benign words that contain lexicon terms inside them must not match (word boundaries)
        ("boundary-0", "Scunthorpe cocktails and assassination-free grapes", "coffee", "matching"),
    ]
    return [SampleRow(key, cap, _jpeg(images[src]), case, source=src) for key, cap, src, case in cases]


# Bytes that are no decodable image but whose SHA-256 the sample's list carries: exact hashes need
# no decoding, so the row is matched although it is quarantined.
KNOWN_BAD_UNDECODABLE = b"\xff\xd8\xff\xe0 listed bytes that no decoder accepts"


def _known_bad_rows(rng: np.random.Generator) -> list[SampleRow]:
    """Stand-ins for known-bad material: generated images whose hashes the sample's list carries.

    One matches by SHA-256 of its bytes, one by pHash after re-encoding (different bytes); one has
    no caption (audited image-only), one no caption and undecodable bytes (quarantined, still
    matched by its SHA-256).
    """
    exact = _jpeg(_shape("square", "blue", np.random.default_rng(SEED + 7)))
    listed = _shape("circle", "green", np.random.default_rng(SEED + 8)).rotate(20, fillcolor=(255, 255, 255))
    return [
        SampleRow("known-bad-exact", "a blue square", exact, "known_bad", source="listed-by-sha256"),
        SampleRow("known-bad-no-caption", None, exact, "known_bad", source="listed-by-sha256"),
        SampleRow(
            "known-bad-undecodable", None, KNOWN_BAD_UNDECODABLE, "known_bad", source="listed-by-sha256"
        ),
        SampleRow(
            "known-bad-phash",
            "a green circle",
            _jpeg(listed, quality=55),
            "known_bad",
            source="listed-by-phash",
        ),
        # listed by PDQ only (ThreatExchange's hash): a resized, re-encoded copy, other bytes and pHash
        SampleRow(
            "known-bad-pdq",
            "an abstract pattern of coloured shapes",
            _jpeg(_pdq_listed().resize((200, 150)), quality=60),
            "known_bad",
            source="listed-by-pdq",
        ),
    ]


def _pdq_listed() -> Image.Image:
    """A generated texture with enough structure for a high PDQ quality (flat shapes score low)."""
    rng = np.random.default_rng(SEED + 9)
    im = Image.new("RGB", (256, 192), (250, 250, 245))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = (int(v) for v in rng.integers(0, 200, size=2))
        w, h = (int(v) for v in rng.integers(20, 90, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill=colour)
    return im


# Text rendered into images (OCR reads it): memes whose text is hateful while the caption is clean,
# and a benign control. Pillow's bundled font (load_default with a size), so builds are identical
# on every machine.
IMAGE_TEXTS = [
    ("meme-hateful-en", "DEATH TO EVERY FAGGOT", "my friends at the beach", "hateful_meme", "chelsea"),
    ("meme-hateful-de", "TOD DEN KANAKEN", "Urlaubsfoto vom Strand mit Freunden", "hateful_meme", "coffee"),
    ("text-benign-0", "HAPPY BIRTHDAY ANNA", "a birthday card for anna", "image_text_benign", "flower.jpg"),
]


def _render_text(base: Image.Image, text: str) -> Image.Image:
    """Meme style: large white capitals with a black outline on a band across the photo."""
    im = base.convert("RGB").resize((448, 336))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=34)
    draw.rectangle((0, 250, 448, 310), fill=(20, 20, 20))
    draw.text((16, 258), text, font=font, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    return im


def _image_text_rows(images: dict[str, Image.Image]) -> list[SampleRow]:
    return [
        SampleRow(
            key, caption, _jpeg(_render_text(images[src], text)), case, source=src, extra={"image_text": text}
        )
        for key, text, caption, case, src in IMAGE_TEXTS
    ]


# Offensive captions in the five largest LAION-2B-multi languages checked (German, French, Spanish,
# Russian, Japanese): the slur lexicons of those languages catch them, the English-only models are
# not applicable; and benign ones, which nothing may flag.
NON_ENGLISH_CAPTIONS = [
    (
        "offensive-de",
        "Foto von diesen dreckigen Kanaken und Zigeunern in der Stadt",
        "de",
        "offensive_non_english",
    ),
    ("offensive-fr", "photo de ces sales bougnoules et nègres dans la rue", "fr", "offensive_non_english"),
    ("offensive-es", "foto de esos maricones y sudacas de mierda en la calle", "es", "offensive_non_english"),
    ("offensive-ru", "фотография этих грязных жидов и хачей на улице", "ru", "offensive_non_english"),
    ("offensive-ja", "チョンは日本から出て行け、在日死ね", "ja", "offensive_non_english"),
    ("benign-de", "eine getigerte Katze schaut in die Kamera", "de", "matching_non_english"),
    ("benign-fr", "une tasse de café sur une soucoupe", "fr", "matching_non_english"),
    ("benign-ru", "ракета на стартовой площадке перед запуском", "ru", "matching_non_english"),
]
_NON_ENGLISH_PHOTOS = ["moon", "clock", "brick", "grass", "colorwheel", "chelsea", "coffee", "rocket"]


def _non_english_rows(images: dict[str, Image.Image]) -> list[SampleRow]:
    return [
        SampleRow(key, caption, _jpeg(images[src]), case, source=src, extra={"language": lang})
        for (key, caption, lang, case), src in zip(NON_ENGLISH_CAPTIONS, _NON_ENGLISH_PHOTOS, strict=True)
    ]


def known_bad_list_csv() -> str:
    """The sample's hash list (docs/hash-lists.md format) for the two known-bad stand-ins."""
    import imagehash

    from audit.pdq import pdq_hash

    exact = _jpeg(_shape("square", "blue", np.random.default_rng(SEED + 7)))
    listed = _shape("circle", "green", np.random.default_rng(SEED + 8)).rotate(20, fillcolor=(255, 255, 255))
    lines = [
        "# mmaudit sample hash list: stand-ins for known-bad material (generated shapes)",
        "algorithm,hash,label",
        f"sha256,{hashlib.sha256(exact).hexdigest()},sample-exact",
        f"sha256,{hashlib.sha256(KNOWN_BAD_UNDECODABLE).hexdigest()},sample-undecodable",
        f"md5,{hashlib.md5(b'not in the sample').hexdigest()},sample-unused",
        f"phash,{imagehash.phash(listed)},sample-perceptual",
        f"pdq,{pdq_hash(_pdq_listed())[0]},sample-pdq",
    ]
    return "\n".join(lines) + "\n"


def _odd_but_valid_images(images: dict[str, Image.Image]) -> list[SampleRow]:
    """Modes web data brings that a decoder must convert: palette, alpha, greyscale, CMYK, EXIF rotation."""
    out = []
    coffee = images["coffee"]
    buf = io.BytesIO()
    coffee.convert("P").save(buf, format="PNG")
    out.append(
        SampleRow(
            "mode-palette-png", "a cup of coffee on a saucer", buf.getvalue(), "matching", source="coffee"
        )
    )
    buf = io.BytesIO()
    rgba = coffee.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(buf, format="PNG")
    out.append(
        SampleRow("mode-rgba-png", "a cup of coffee on a saucer", buf.getvalue(), "matching", source="coffee")
    )
    buf = io.BytesIO()
    images["chelsea"].convert("CMYK").save(buf, format="JPEG")
    out.append(
        SampleRow(
            "mode-cmyk-jpeg",
            "a tabby cat looking at the camera",
            buf.getvalue(),
            "matching",
            source="chelsea",
        )
    )
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    images["rocket"].transpose(Image.Transpose.ROTATE_90).save(buf, format="JPEG", exif=exif)
    out.append(
        SampleRow(
            "mode-exif-rotated", "a rocket on the launch pad", buf.getvalue(), "matching", source="rocket"
        )
    )
    return out


def _malformed_rows(images: dict[str, Image.Image]) -> list[SampleRow]:
    good = _jpeg(images["moon"])
    return [
        SampleRow(
            "bad-truncated-jpeg",
            "the surface of the moon",
            good[: len(good) // 2],
            "malformed:image_truncated",
        ),
        SampleRow(
            "bad-not-an-image",
            "an html error page",
            b"<html><body>404 Not Found</body></html>",
            "malformed:image_undecodable",
        ),
        SampleRow("bad-zero-bytes", "an empty file", b"", "malformed:image_empty"),
        SampleRow("bad-null-caption", None, _jpeg(images["coins"]), "malformed:caption_missing"),
        SampleRow(
            "bad-latin1-caption",
            "café au lait".encode("latin-1"),
            _jpeg(images["coffee"]),
            "malformed:caption_not_utf8",
        ),
        # neither side usable: the only rows that are quarantined
        SampleRow("bad-truncated-no-caption", None, good[: len(good) // 3], "unscorable:image_truncated"),
        SampleRow("bad-zero-bytes-blank-caption", "   ", b"", "unscorable:image_empty"),
        SampleRow(
            "fetch-failed",
            "a photo that could not be downloaded",
            None,
            "fetch_failed",
            status="failed_to_download",
            error_message="HTTP Error 404: Not Found",
        ),
    ]


def _meta(row: SampleRow) -> dict:
    w = h = None
    if (
        row.image
        and not row.case.startswith(("malformed", "unscorable"))
        and row.image != KNOWN_BAD_UNDECODABLE
    ):
        with Image.open(io.BytesIO(row.image)) as im:
            w, h = im.size
    return {
        "key": row.key,
        "url": f"{URL_BASE}/{row.key}.jpg",
        "status": row.status,
        "error_message": row.error_message,
        "width": w,
        "height": h,
        "original_width": w,
        "original_height": h,
        "exif": None,
        "sha256": hashlib.sha256(row.image).hexdigest() if row.image else None,
    }


def _caption_str(c: str | bytes | None) -> str | None:
    return c if not isinstance(c, bytes) else None  # parquet string columns hold valid UTF-8 only


def _write_img2dataset_parquet(rows: list[SampleRow], path: Path) -> None:
    cols = {name: [] for name in IMG2DATASET_PARQUET_SCHEMA.names}
    for r in rows:
        m = _meta(r)
        for k, v in m.items():
            cols[k].append(v)
        cols["caption"].append(_caption_str(r.caption))
        cols["jpg"].append(r.image)
    pq.write_table(pa.table(cols, schema=IMG2DATASET_PARQUET_SCHEMA), path)
    _write_stats(rows, path.with_name(path.stem + "_stats.json"))


def _write_webdataset(rows: list[SampleRow], path: Path) -> None:
    side = {name: [] for name in WEBDATASET_SIDECAR_SCHEMA.names}
    with tarfile.open(path, "w") as tar:
        for r in rows:
            m = _meta(r)
            for k, v in m.items():
                side[k].append(v)
            side["caption"].append(_caption_str(r.caption))
            if r.status != "success":
                continue  # img2dataset writes failed samples to the parquet only
            members = {".json": json.dumps({**m, "caption": _caption_str(r.caption)}).encode()}
            if r.caption is not None:
                members[".txt"] = r.caption if isinstance(r.caption, bytes) else r.caption.encode()
            if r.image is not None:
                members[".jpg"] = r.image
            for suffix, data in members.items():
                info = tarfile.TarInfo(r.key + suffix)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    pq.write_table(pa.table(side, schema=WEBDATASET_SIDECAR_SCHEMA), path.with_suffix(".parquet"))
    _write_stats(rows, path.with_name(path.stem + "_stats.json"))


def _write_stats(rows: list[SampleRow], path: Path) -> None:
    ok = sum(r.status == "success" for r in rows)
    path.write_text(
        json.dumps({"count": len(rows), "successes": ok, "failed_to_download": len(rows) - ok}, indent=2)
    )


def _write_laion_metadata(rows: list[SampleRow], path: Path) -> None:
    rng = np.random.default_rng(SEED + 1)
    cols = {name: [] for name in LAION_METADATA_SCHEMA.names}
    for i, r in enumerate(rows):
        m = _meta(r)
        unsafe = r.case in ("offensive", "hateful")
        cols["SAMPLE_ID"].append(1000 + i)
        cols["URL"].append(m["url"])
        cols["TEXT"].append(_caption_str(r.caption))
        cols["HEIGHT"].append(m["height"])
        cols["WIDTH"].append(m["width"])
        cols["LICENSE"].append("?")
        cols["NSFW"].append("NSFW" if r.key == "offensive-0" else "UNSURE" if unsafe else "UNLIKELY")
        cols["similarity"].append(
            float(rng.uniform(0.1, 0.27) if r.case == "mismatched" else rng.uniform(0.3, 0.4))
        )
        cols["punsafe"].append(float(rng.uniform(0.0, 0.1)))
        cols["pwatermark"].append(float(rng.uniform(0.0, 0.3)))
        cols["hash"].append(int(rng.integers(-(2**62), 2**62)))
    pq.write_table(pa.table(cols, schema=LAION_METADATA_SCHEMA), path)


def build_sample(out: str | Path) -> dict[str, list[str]]:
    """Write the sample corpus under ``out``; returns the shard paths by format. Idempotent."""
    out = Path(out)
    rows = build_rows()
    # round-robin over three shards; byte captions only survive in the tar (parquet strings are UTF-8),
    # and the failed download exercises the tar sidecar join
    parts: list[list[SampleRow]] = [[], [], []]
    for i, r in enumerate(rows):
        parts[2 if isinstance(r.caption, bytes) or r.status != "success" else i % 3].append(r)
    written: dict[str, list[str]] = {"parquet": [], "webdataset": [], "laion_metadata": []}
    for sub in written:
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(parts[:2]):
        path = out / "parquet" / f"{i:05d}.parquet"
        _write_img2dataset_parquet(part, path)
        written["parquet"].append(str(path))
    tar = out / "webdataset" / "00002.tar"
    _write_webdataset(parts[2], tar)
    written["webdataset"].append(str(tar))
    meta = out / "laion_metadata" / "part-00000.parquet"
    _write_laion_metadata(rows, meta)
    written["laion_metadata"].append(str(meta))
    (out / "known_bad.csv").write_text(known_bad_list_csv())
    (out / "PLANTED.json").write_text(json.dumps(planted_cases(rows), indent=2))
    return written


def planted_cases(rows: list[SampleRow] | None = None) -> dict[str, list[str]]:
    """case -> keys: what the audit of the sample is expected to find."""
    cases: dict[str, list[str]] = {}
    for r in rows or build_rows():
        cases.setdefault(r.case, []).append(r.key)
    return cases
