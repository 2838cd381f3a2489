"""Precision and recall of the near-duplicate rule (pool/similar.py) on the labelled pairs.

Prints a Markdown table, one row per threshold, over tests/data/near_duplicates.json:
pairs labelled "same story" that the rule merges (true positives), pairs it merges that
are different stories (false positives), and those it misses. The row of the shipped
threshold is marked; docs/deduplication.md carries it (tests check the figures match).

    python bench/dedup_quality.py
"""

import json
from pathlib import Path

from newsletter.pool.similar import THRESHOLD, profile, same_story

PAIRS = Path(__file__).resolve().parent.parent / "tests" / "data" / "near_duplicates.json"
GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def _language(title: str) -> str:
    return "de" if title.startswith("DPMA") else "fr" if title.startswith("INPI") else "en"


def main() -> None:
    pairs = json.loads(PAIRS.read_text(encoding="utf-8"))["pairs"]
    profiles = []
    for pair in pairs:
        language = _language(pair["a"]["title"])
        a = profile(pair["a"]["title"], pair["a"]["text"], language)
        b = profile(pair["b"]["title"], pair["b"]["text"], language)
        profiles.append((a, b, bool(pair["same"])))
    print("| threshold | pairs | precision | recall | merged wrongly | missed |")
    print("|---|---|---|---|---|---|")
    for threshold in sorted({*GRID, THRESHOLD}):
        decided = [(same_story(a, b, threshold), same) for a, b, same in profiles]
        true_pos = sum(merged and same for merged, same in decided)
        false_pos = sum(merged and not same for merged, same in decided)
        false_neg = sum(not merged and same for merged, same in decided)
        precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 1.0
        recall = true_pos / (true_pos + false_neg) if true_pos + false_neg else 1.0
        mark = " (shipped)" if threshold == THRESHOLD else ""
        figures = f"{precision:.2f} | {recall:.2f} | {false_pos} | {false_neg}"
        print(f"| {threshold:.2f} | {len(pairs)} | {figures} |{mark}")


if __name__ == "__main__":
    main()
