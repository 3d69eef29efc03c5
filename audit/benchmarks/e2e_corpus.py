"""The corpora of ``make bench-e2e``: alt-text captions with planted harms, CLIP-like embeddings, and
an img2dataset parquet set of real-sized JPEGs.

- ``clip_retrieval_set``: a clip-retrieval folder (``metadata/metadata_N.parquet``,
  ``img_emb/img_emb_N.npy``, ``text_emb/text_emb_N.npy`` in float16, as clip-retrieval writes them,
  and an ``embeddings.json`` naming the model). Captions follow the shapes of LAION alt-text
  (product listings, stock-photo titles, SEO strings, file names, other languages, HTML entities,
  long run-on captions); a seeded fraction of rows carries a planted harm (slur, sexual or
  violent term, profanity, hateful phrase, PII). ``planted`` counts them.
- ``metadata_set``: the same rows as LAION metadata parquet only (the text-only audit).
- ``image_set``: img2dataset parquet shards of JPEGs cut and scaled from the real photographs that
  ship with scikit-image and scikit-learn, 320-800 px a side at quality 85 (tens of KB each).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.kernels.synthetic import clip_like_pairs

ADJ = [
    "new",
    "vintage",
    "cheap",
    "best",
    "cute",
    "modern",
    "rustic",
    "elegant",
    "handmade",
    "large",
    "small",
    "luxury",
    "classic",
    "retro",
]
COLOUR = [
    "black",
    "white",
    "red",
    "blue",
    "green",
    "pink",
    "grey",
    "navy",
    "beige",
    "gold",
    "silver",
    "brown",
]
ITEM = [
    "dress",
    "shirt",
    "sofa",
    "lamp",
    "mug",
    "poster",
    "sneakers",
    "backpack",
    "ring",
    "necklace",
    "table",
    "chair",
    "rug",
    "bag",
    "jacket",
    "watch",
    "phone",
    "case",
    "wallpaper",
    "bracelet",
    "curtain",
]
WHO = ["women", "men", "kids", "girls", "boys", "baby", "her", "him", "home", "office", "wedding", "party"]
BRAND = ["Acme", "Nordic", "Urban", "Zen", "Maison", "Pacific", "Royal", "Alpine", "Metro", "Sunny"]
SUBJECT = [
    "woman",
    "man",
    "child",
    "dog",
    "cat",
    "couple",
    "family",
    "businessman",
    "student",
    "chef",
    "doctor",
    "nurse",
    "farmer",
    "tourist",
    "horse",
    "bird",
    "car",
    "bridge",
    "mountain",
    "beach",
    "city",
    "skyline",
    "house",
    "garden",
    "kitchen",
]
ACTION = [
    "smiling",
    "walking",
    "sitting",
    "running",
    "standing",
    "working",
    "reading",
    "eating",
    "laughing",
    "posing",
]
PLACE = [
    "park",
    "street",
    "office",
    "beach",
    "forest",
    "kitchen",
    "studio",
    "cafe",
    "market",
    "field",
    "snow",
    "sunset",
]
SHOP = ["Etsy", "eBay", "Amazon", "Walmart", "AliExpress", "Zazzle", "Redbubble"]
FOREIGN = [
    "Vestido de fiesta largo para mujer color rojo",
    "Wohnzimmer Sofa mit Kissen in Grau",
    "Robe de soirée noire pour femme élégante",
    "東京の夜景 高層ビル",
    "Фото красивого заката над морем",
    "Bolsa de couro feminina marrom",
]
# planted harms: (kind, fraction of rows, phrases); lexicon terms are the packaged lexicons' own
PLANTS: list[tuple[str, float, list[str]]] = [
    ("slur", 0.002, ["nigger", "faggot", "kike", "chink", "spic"]),
    ("sexual", 0.01, ["porn", "xxx", "nude", "nsfw", "pornography"]),
    ("violence", 0.005, ["gore", "beheading", "massacre", "dead body", "torture video"]),
    ("profanity", 0.01, ["fucking", "shit", "bitch", "asshole", "dumb bitch"]),
    ("hateful", 0.003, ["white trash redneck hillbilly", "kill all the", "go back to your country"]),
    ("pii", 0.005, ["contact jane.doe@example.com", "call 555-867-5309", "12 Baker Street London"]),
]


def _pick(rng: np.random.Generator, words: list[str], n: int) -> np.ndarray:
    return np.asarray(words, dtype=object)[rng.integers(0, len(words), n)]


def alt_text_captions(n: int, seed: int = 0) -> tuple[list[str], dict[str, int]]:
    """``n`` alt-text-like captions and how many rows carry each planted harm."""
    rng = np.random.default_rng(seed)
    shape = rng.choice(7, size=n, p=[0.3, 0.25, 0.15, 0.08, 0.07, 0.05, 0.1])
    a, c, it, who, br = (_pick(rng, w, n) for w in (ADJ, COLOUR, ITEM, WHO, BRAND))
    su, ac, pl, sh = (_pick(rng, w, n) for w in (SUBJECT, ACTION, PLACE, SHOP))
    num = rng.integers(1, 99999, n)
    out: list[str] = []
    for i in range(n):
        s = int(shape[i])
        if s == 0:
            cap = f"{a[i].title()} {c[i]} {it[i]} for {who[i]} - {br[i]} size {num[i] % 20 + 30}"
        elif s == 1:
            cap = f"Stock photo of a {su[i]} {ac[i]} in the {pl[i]}"
        elif s == 2:
            cap = f"{br[i]} {it[i]} | {sh[i]} | Free Shipping on orders over ${num[i] % 90 + 10}"
        elif s == 3:
            cap = f"IMG_{num[i]:05d}.JPG"
        elif s == 4:
            cap = FOREIGN[i % len(FOREIGN)]
        elif s == 5:
            cap = f"{a[i].title()} {it[i]} &amp; {c[i]} {it[(i + 1) % n]} &#8211; {br[i]}"
        else:
            words = " ".join(_pick(rng, ADJ + COLOUR + ITEM + SUBJECT + PLACE, int(num[i] % 40 + 20)))
            cap = f"{su[i].title()} {ac[i]} {words}"
        out.append(cap)
    planted: dict[str, int] = {}
    for kind, fraction, phrases in PLANTS:
        rows = np.flatnonzero(rng.random(n) < fraction)
        planted[kind] = int(rows.size)
        for j, i in enumerate(rows):
            out[i] = f"{out[i]} {phrases[j % len(phrases)]}"
    return out, planted


@dataclass
class Corpus:
    root: Path
    shards: int
    rows: int
    planted: dict[str, int] = field(default_factory=dict)
    bytes_on_disk: int = 0


def _metadata_table(captions: list[str], start: int, rng: np.random.Generator) -> pa.Table:
    n = len(captions)
    ids = np.arange(start, start + n)
    return pa.table(
        {
            "url": pa.array([f"https://img.bench.invalid/{i}.jpg" for i in ids.tolist()]),
            "caption": pa.array(captions, pa.string()),
            "similarity": pa.array(rng.uniform(0.28, 0.4, n).astype(np.float32)),
            "width": pa.array(rng.integers(200, 1600, n).astype(np.int32)),
            "height": pa.array(rng.integers(200, 1600, n).astype(np.int32)),
            "punsafe": pa.array(rng.beta(0.5, 20, n).astype(np.float32)),
            "NSFW": pa.array(np.where(rng.random(n) < 0.01, "NSFW", "UNLIKELY")),
            "SAMPLE_ID": pa.array(ids.astype(np.int64)),
        }
    )


def clip_retrieval_set(
    root: Path, *, shards: int, rows_per_shard: int, dim: int = 512, seed: int = 0
) -> Corpus:
    """A clip-retrieval folder of ``shards`` x ``rows_per_shard`` rows (skipped if already built)."""
    done = root / "corpus.json"
    if done.exists():
        return Corpus(**{**json.loads(done.read_text()), "root": root})
    for sub in ("metadata", "img_emb", "text_emb"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "embeddings.json").write_text(json.dumps({"model": "ViT-B-32", "dim": dim}))
    planted: dict[str, int] = {}
    for s in range(shards):
        rng = np.random.default_rng(seed + 1000 + s)
        captions, counts = alt_text_captions(rows_per_shard, seed=seed + s)
        for k, v in counts.items():
            planted[k] = planted.get(k, 0) + v
        pq.write_table(
            _metadata_table(captions, s * rows_per_shard, rng), root / "metadata" / f"metadata_{s}.parquet"
        )
        img, txt = clip_like_pairs(rows_per_shard, dim, seed=seed + s)
        np.save(root / "img_emb" / f"img_emb_{s}.npy", img.astype(np.float16))
        np.save(root / "text_emb" / f"text_emb_{s}.npy", txt.astype(np.float16))
        del img, txt
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    corpus = Corpus(root, shards, shards * rows_per_shard, planted, size)
    done.write_text(json.dumps({k: v for k, v in corpus.__dict__.items() if k != "root"}))
    return corpus


def first_shards(source: Corpus, root: Path, n: int) -> Path:
    """A clip-retrieval folder holding the first ``n`` shards of ``source`` (hard links, else copies)."""
    import shutil

    for sub, stem in (
        ("metadata", "metadata_{}.parquet"),
        ("img_emb", "img_emb_{}.npy"),
        ("text_emb", "text_emb_{}.npy"),
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            src, dst = source.root / sub / stem.format(i), root / sub / stem.format(i)
            if not dst.exists():
                try:
                    dst.hardlink_to(src)
                except OSError:
                    shutil.copyfile(src, dst)
    shutil.copyfile(source.root / "embeddings.json", root / "embeddings.json")
    return root


def metadata_set(source: Corpus, root: Path) -> Corpus:
    """The clip-retrieval set's metadata as LAION metadata parquet (URL, TEXT, ...): no embeddings."""
    root.mkdir(parents=True, exist_ok=True)
    for s in range(source.shards):
        out = root / f"part-{s:05d}.parquet"
        if not out.exists():
            t = pq.read_table(source.root / "metadata" / f"metadata_{s}.parquet")
            pq.write_table(t.rename_columns(["URL", "TEXT", *t.column_names[2:]]), out)
    return Corpus(root, source.shards, source.rows, source.planted)


def _photos() -> list[np.ndarray]:
    from audit.sample import PHOTOS, _photo

    return [_photo(loader, name) for loader, name, _ in PHOTOS]


IMAGES_PER_SHARD = 100


def image_set(root: Path, *, images: int, per_shard: int = IMAGES_PER_SHARD, seed: int = 0) -> Corpus:
    """img2dataset parquet shards of real-sized JPEGs (skipped if already built)."""
    from PIL import Image

    done = root / "corpus.json"
    if done.exists():
        return Corpus(**{**json.loads(done.read_text()), "root": root})
    root.mkdir(parents=True, exist_ok=True)
    photos = [Image.fromarray(p).convert("RGB") for p in _photos()]
    rng = np.random.default_rng(seed)
    captions, planted = alt_text_captions(images, seed=seed + 77)
    shards = -(-images // per_shard)
    per = per_shard
    for s in range(shards):
        rows = range(s * per, min(images, (s + 1) * per))
        jpgs, widths, heights = [], [], []
        for i in rows:
            im = photos[i % len(photos)]
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            side = int(rng.integers(320, 801))
            crop = im.crop((x0, y0, x0 + cw, y0 + ch))
            scale = side / max(cw, ch)
            crop = crop.resize((max(1, int(cw * scale)), max(1, int(ch * scale))), Image.BICUBIC)
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=85)
            jpgs.append(buf.getvalue())
            widths.append(crop.size[0])
            heights.append(crop.size[1])
        n = len(jpgs)
        table = pa.table(
            {
                "key": pa.array([f"{s:05d}{i:04d}" for i in range(n)]),
                "url": pa.array([f"https://img.bench.invalid/p{i}.jpg" for i in rows]),
                "caption": pa.array([captions[i] for i in rows]),
                "status": pa.array(["success"] * n),
                "width": pa.array(widths, pa.int32()),
                "height": pa.array(heights, pa.int32()),
                "jpg": pa.array(jpgs, pa.binary()),
            }
        )
        pq.write_table(table, root / f"{s:05d}.parquet", row_group_size=256)
    size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    corpus = Corpus(root, shards, images, planted, size)
    done.write_text(json.dumps({k: v for k, v in corpus.__dict__.items() if k != "root"}))
    return corpus
