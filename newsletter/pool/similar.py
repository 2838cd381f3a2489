"""One story, once: how alike two pool items are, to merge the same story from several sources.

The same WIPO announcement reaches the pool from WIPO's feed, the EPO's and a page
source, under different URLs and slightly different titles. Exact identity (the
canonical URL, ``items.fingerprint``) misses those; this module scores how alike two
items are from their words:

* words are folded (case, accents), function words dropped, and reduced to their stem
  with the Snowball stemmer of the item's language (``launches`` and ``launched`` are
  one word);
* the score is the mean of the Jaccard similarity of the titles' words and of the
  whole texts' words (title and summary);
* two guards decide first, whatever the score: two titles that both carry years and
  share none, or both carry other numbers and not the same ones, are different stories
  ("Patent Index 2024" and "Patent Index 2025", maintenance on the 14th and on the 21st,
  "part 1" and "part 2"); and so
  are two items whose titles each name something the other item never mentions ("WIPO
  Translate covers Korean" and "... covers Arabic"; "EPO and JPO" and "EPO and CNIPA"),
  the near-miss that word overlap alone takes for one story.

Exact Jaccard over word sets is used rather than MinHash or SimHash: the pool compares a
new entry with the few thousand items of the last weeks, where exact sets cost little
and estimate nothing. The threshold is tuned on a hand-labelled set of pairs
(tests/data/near_duplicates.json); its precision and recall are in docs/deduplication.md,
and an editor can split a wrong merge.
"""

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import snowballstemmer
from sqlmodel import Session, col, select

from newsletter.core.models import Item
from newsletter.pool.richtext import plain_text

# Items at least this alike are one story (tuned on the labelled pairs; see the module doc).
THRESHOLD = 0.4
# A new entry is compared with the items published this close to it, the newest first,
# at most this many.
WINDOW = timedelta(days=21)
CANDIDATES = 2000

_STEMMERS = {
    "da": "danish",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "it": "italian",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "sv": "swedish",
}
# Words that say nothing of what a story is about, in the groups' main languages.
_STOPWORD_TEXT = (
    "a an the and or of in on at to for from by with as is are was were be been has have "
    "had its it this that these those new now our your their his her not no than then into "
    "over about after before under up down out more most all any each other such only also "
    "can will "
    "der die das ein eine einen einem und oder von vom im in am an auf für mit zu zum zur "
    "ist sind wird werden wurde wurden des den dem bei aus als auch nach über neue neuer "
    "neues "
    "le la les un une des du de d l et ou en au aux pour par sur dans avec est sont a été "
    "selon son sa ses leur leurs nouveau nouvelle qui que "
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"\d+")
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")


@dataclass(frozen=True)
class Profile:
    """What the comparison needs of one item: its title words, all its words, its numbers (in order)."""

    title: frozenset[str]
    words: frozenset[str]
    numbers: tuple[str, ...]
    years: frozenset[str]


@cache
def _stemmer(language: str) -> "snowballstemmer.Stemmer":
    return snowballstemmer.stemmer(_STEMMERS.get(language.split("-")[0].lower(), "english"))


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str, language: str = "en") -> frozenset[str]:
    """The stems of a text's meaningful words."""
    kept = [w for w in _WORD.findall(_fold(text)) if w not in _STOPWORDS and not w.isdigit()]
    return frozenset(_stemmer(language).stemWords(kept))


def profile(title: str, text: str, language: str = "en") -> Profile:
    title_words = words(title, language)
    return Profile(
        title=title_words,
        words=title_words | words(text, language),
        numbers=tuple(n for n in _NUMBER.findall(title) if not _YEAR.fullmatch(n)),
        years=frozenset(_YEAR.findall(title)),
    )


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _disjoint(a: frozenset[str], b: frozenset[str]) -> bool:
    return bool(a) and bool(b) and not (a & b)


def _differ(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    # In the order they appear: "week 2, story 1" and "week 1, story 2" are two stories.
    return bool(a) and bool(b) and a != b


def similarity(a: Profile, b: Profile) -> float:
    """How alike two items are, from 0 (nothing shared, or different numbers) to 1."""
    if _disjoint(a.years, b.years) or _differ(a.numbers, b.numbers):
        return 0.0
    if (a.title - b.words) and (b.title - a.words):
        return 0.0
    return (_jaccard(a.title, b.title) + _jaccard(a.words, b.words)) / 2


def same_story(a: Profile, b: Profile, threshold: float = THRESHOLD) -> bool:
    return similarity(a, b) >= threshold


class StoryIndex:
    """The recent items' word profiles, to find the one a new entry repeats.

    Built once per collect of a source (not once per entry: a feed of thousands of
    entries would otherwise load thousands of items thousands of times), from the items
    published within :data:`WINDOW` of now, newest first, at most :data:`CANDIDATES`;
    items stored during the collect are added as they come. Only items sharing a title
    word with the entry are scored (an inverted index on title words): a pair sharing
    none cannot reach the threshold.
    """

    def __init__(self, session: Session, now: datetime) -> None:
        self._profiles: dict[int, tuple[Profile, datetime | None]] = {}
        self._by_word: dict[str, set[int]] = {}
        query = (
            select(Item)
            .where(col(Item.published_at).between(now - WINDOW, now + WINDOW))
            .order_by(col(Item.id).desc())
            .limit(CANDIDATES)
        )
        for item in session.exec(query):
            assert item.id is not None
            self.add(
                item.id, profile(item.title, plain_text(item.summary_html), item.language), item.published_at
            )

    def add(self, item_id: int, known: Profile, published: datetime | None) -> None:
        self._profiles[item_id] = (known, published)
        for word in known.title:
            self._by_word.setdefault(word, set()).add(item_id)

    def find(self, new: Profile, published: datetime | None) -> tuple[int, float] | None:
        """The id of the item telling the same story as ``new`` (and how alike), or None."""
        candidates = set().union(*(self._by_word.get(word, ()) for word in new.title)) if new.title else set()
        best: tuple[int, float] | None = None
        for item_id in sorted(candidates, reverse=True):
            known, when = self._profiles[item_id]
            if published is not None and when is not None and abs(published - when) > WINDOW:
                continue
            score = similarity(new, known)
            if score >= THRESHOLD and (best is None or score > best[1]):
                best = (item_id, score)
        return best
