"""What ordinary catalog text renders as in prompts, recorded before the prompt hardening of issue 14.

Hardening the sanitizer must not change one byte of a prompt built from ordinary text: a user's content
hash digests the sanitized titles and hints (momorec.motivate.inputs), so a changed rendering would
recompute every stored row and make generated texts of unchanged data stale. `renderings` computes, per
entity, the sha256 of everything the stage renders from it (the v3 item prompt, the title and catalog hint
as the stage cuts them, its history line, and for users the v3 motivation, revision and reviewer prompts);
tests/motivate/data/ordinary_prompts.json holds the values the sanitizer of commit 4085a59 gave. A deliberate
change of ordinary renderings means rewriting that file (`python -m tests.motivate.ordinary_prompts`) and
saying why in the commit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from momorec.ingest import readers
from momorec.ingest.config import CatalogSource
from momorec.motivate.prompts import (
    catalog_hint,
    history_block,
    item_analyst_prompt,
    load_prompts,
    motivation_prompt,
    reviewer_prompt,
    sanitize,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo"
RECORDED = Path(__file__).resolve().parent / "data" / "ordinary_prompts.json"

# The demo's settings (configs/demo.yaml): purchase lines cut to 60 characters, 5 items, 2 motivations.
HISTORY_CHARS, FIELD_CHARS, HISTORY_ITEMS, MAX_MOTIVATIONS = 60, 200, 5, 2

# Ordinary text the demo lacks: every catalog field, accents, CJK, emoji, symbols, '&' and entity-like
# spellings real catalogs hold (Beauty has 'XIUstyle&#8482'), brackets that are not history numbers.
HANDWRITTEN = [
    {
        "item": "h1",
        "title": "Crème Brûlée Lip Balm ½ oz – Vanilla™ «Édition» (2 pack)",
        "categories": ["Beauty", "Skin Care", "Lips"],
        "brand": "L'Oréal Paris",
        "price": 4.5,
        "description": "Moisturizes lips for 8 hours. Contains shea butter & vitamin E; ≤ 1% fragrance → gentle.",
    },
    {
        "item": "h2",
        "title": "資生堂 アネッサ パーフェクトUV スキンケアミルク 60mL【送料無料】",
        "categories": ["ビューティー", "日焼け止め"],
        "brand": "資生堂",
        "price": 2380,
    },
    {"item": "h3", "title": "AT&T Salon Kit & Co. — Q&A edition, Fish&regular &amp; XIUstyle&#8482", "brand": "B&B"},
    {"item": "h4", "title": "Nail Art Brushes [Set of 15] with Case (Pink) 💅✨", "categories": ["Beauty", "Nails"]},
    {"item": "h5", "title": "Hair Dryer 1875W\xa0Ionic\tTravel  Size", "description": "Line one.\nLine two.\r\n\n  "},
    {"item": "h6", "title": "Ünïcödé Shampoo Ελληνικά Русский עברית العربية", "price": 0},
    {"item": "h7", "title": "Tea Tree Oil （100ml） Pure 100% — Grade A+ #1 Seller", "categories": "Beauty > Oils"},
]


def demo_items() -> list[dict[str, Any]]:
    """The demo catalog as ingest parses it, then the handwritten items."""
    path = str(DEMO / "items.jsonl")
    rows = [r for r in readers.parse_catalog_file(CatalogSource(path=path), path, 2000, None) if r["kind"] == "item"]
    return rows + [{"brand": None, "price": None, "description": None, "categories": [], **h} for h in HANDWRITTEN]


def demo_histories() -> dict[str, list[str]]:
    """Each demo user's prompt history: the last HISTORY_ITEMS training items (all but the last two)."""
    histories = {}
    for line in (DEMO / "sequences.txt").read_text().splitlines():
        user, *items = line.split()
        histories[user] = items[:-2][-HISTORY_ITEMS:]
    return histories


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


def item_rendering(item: dict[str, Any]) -> list[Any]:
    """Everything the motivate stage renders from one catalog item (catalog and analyst modes)."""
    v3 = load_prompts("v3")
    title, hint = sanitize(item.get("title"), HISTORY_CHARS), sanitize(catalog_hint(item), HISTORY_CHARS)
    return [item_analyst_prompt(v3, item, FIELD_CHARS), title, hint, history_block([(title, hint)], FIELD_CHARS)]


def user_rendering(entries: list[tuple[str, str]]) -> list[Any]:
    """The v3 user agents' prompts over one history of (title, hint) entries."""
    v3 = load_prompts("v3")
    draft = [{"reason": "Wants to keep a skin care routine", "evidence": [1, len(entries)]}]
    return [
        motivation_prompt(v3, entries, MAX_MOTIVATIONS, FIELD_CHARS),
        motivation_prompt(v3, entries, MAX_MOTIVATIONS, FIELD_CHARS, json.dumps(draft), "Name the routine"),
        reviewer_prompt(v3, entries, draft, FIELD_CHARS),
    ]


def renderings() -> dict[str, str]:
    """{"item:<id>" | "user:<id>": sha256 of its renderings} over the demo and the handwritten items."""
    items = demo_items()
    out = {f"item:{item['item']}": _digest(item_rendering(item)) for item in items}
    lines = {item["item"]: item_rendering(item)[1:3] for item in items}
    for user, history in demo_histories().items():
        out[f"user:{user}"] = _digest(user_rendering([tuple(lines[i]) for i in history]))
    handwritten = [tuple(lines[h["item"]]) for h in HANDWRITTEN]
    out["user:handwritten"] = _digest(user_rendering(handwritten))
    return out


def catalog_digest(path: Path) -> str:
    """sha256 over the renderings of every item of a JSONL catalog (Amazon Beauty's 12,101)."""
    h = hashlib.sha256()
    for item in readers.parse_catalog_file(CatalogSource(path=str(path)), str(path), 2000, None):
        if item["kind"] == "item":
            h.update(_digest(item_rendering(item)).encode())
    return h.hexdigest()


def record(beauty: Path | None = None) -> None:
    recorded = renderings()
    if beauty is not None:
        recorded["catalog:amazon-beauty"] = catalog_digest(beauty)
    RECORDED.parent.mkdir(exist_ok=True)
    RECORDED.write_text(json.dumps(recorded, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    record(ROOT.parent / "shared" / "datasets" / "amazon-beauty" / "items.jsonl")
    print(f"wrote {RECORDED}")
