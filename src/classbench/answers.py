"""Turn a model's free-text answer into a class label.

Every strategy that reads a model's words goes through `AnswerMapper`, so what counts as
naming a class is decided in one place and is the same for every model. These rules are the
public contract: changing one changes benchmark numbers, so they are written down here rather
than left to be read out of the code.

Normalisation (`normalise`) is applied identically to answers, class names and aliases, so
every comparison is symmetric:

1. Unicode NFKC, then lower case.
2. A leading ``answer:``-style prefix is removed: ``answer``, ``final answer``, ``label``,
   ``class``, ``category``, ``prediction`` or ``output`` followed by a colon, also inside
   markdown or quotes (``**Answer:** cat``).
3. Apostrophes are dropped (``cat's`` -> ``cats``). Every other character that is not a letter
   or a digit (punctuation, quotes, markdown marks, the separators ``-``, ``_``, ``/``) becomes
   a space.
4. Leading articles (``a``, ``an``, ``the``) are dropped, unless nothing else would remain.
5. Each word is singularised by `singularise`: a few simple suffix rules that prefer leaving a
   word alone to mangling it (``cats`` -> ``cat``, ``boxes`` -> ``box``, ``butterflies`` ->
   ``butterfly``, ``glass``, ``bus`` and ``iris`` unchanged; words under four characters are
   never touched, so ``yos`` stays ``yos``).
6. Whitespace is collapsed to single spaces.

Matching (`AnswerMapper.map`); the first rule that applies decides:

1. exact: the normalised answer equals a normalised class name, either as is or with its
   spaces removed (``t shirt`` = ``tshirt``, ``ak 47`` = ``ak47``).
2. alias: the same comparison against the aliases given for a class.
3. contains: a class name or alias occurs in the answer as a run of whole words (or, as in
   rule 1, a run of whole words whose concatenation is the name), so ``cat`` never matches
   inside ``caterpillar``. A match that lies inside a longer match is dropped (``mountain
   bike`` beats ``bike``). One class left: that class; two or more: ambiguous.
4. fuzzy: for answers of at most `FUZZY_MAX_WORDS` words, the rapidfuzz ratio of the answer
   against every name and alias; the best score at or above the threshold gives its class,
   and a best score shared by different classes is ambiguous.
5. Anything else, the empty answer included, is invalid.

Ambiguous and invalid answers carry no label: the mapper never guesses, so an unparseable
answer costs the model accuracy instead of earning it a lucky hit. Classes whose names
normalise to the same text (`cat`, `Cat`, `cats`) could only ever be ambiguous, so a mapper
refuses such a label set when it is built, before any question is asked (`check_distinct`); an
answer naming a class and an alias of another class is ambiguous. Negation is not understood: ``not a cat`` maps to
cat. Models asked to answer with a class name rarely negate, and a negation parser would
itself be a guess.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz, process

from classbench.errors import UserError

How = Literal["exact", "alias", "contains", "fuzzy", "ambiguous", "invalid"]

FUZZY_MAX_WORDS = 4
"""Longer answers are sentences; a fuzzy score over a whole sentence means nothing."""

_PREFIX = re.compile(
    r"^[\W_]*(?:final\s+)?(?:answer|label|class|category|prediction|output)[\W_]*?:"
)
_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc]")
_NON_WORD = re.compile(r"[\W_]+")
_ARTICLES = frozenset({"a", "an", "the"})
_YES = frozenset({"yes", "yeah", "yep", "true"})
_NO = frozenset({"no", "nope", "false"})

_IRREGULAR = {
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "knives": "knife",
    "wives": "wife",
    "lives": "life",
    "leaves": "leaf",
    "wolves": "wolf",
    "halves": "half",
    "shelves": "shelf",
    "loaves": "loaf",
    "calves": "calf",
    "hooves": "hoof",
    "scarves": "scarf",
    "cacti": "cactus",
    "fungi": "fungus",
    "octopi": "octopus",
}
# Words that end in "s" in the singular but not in "ss", "us" or "is".
_INVARIANT = frozenset(
    {"series", "species", "news", "lens", "mars", "chaos", "canvas", "atlas", "christmas",
     "pancreas", "bias", "cosmos", "asbestos", "ethos", "physics"}
)
# Singulars ending in "ie", whose "-ies" plural would otherwise become "-y".
_IE_SINGULARS = frozenset(
    {"movie", "cookie", "zombie", "brownie", "hoodie", "selfie", "goalie", "rookie", "prairie",
     "calorie", "genie", "magpie", "pixie", "collie", "budgie", "beanie", "birdie", "smoothie",
     "necktie", "bowtie", "talkie", "hippie", "veggie"}
)
# Singulars ending in "che" or "she", whose plural would otherwise lose its "e".
_E_SINGULARS = frozenset(
    {"niche", "cache", "quiche", "mustache", "moustache", "headache", "avalanche", "cliche",
     "psyche", "creche", "microfiche"}
)
# Singulars ending in "o" whose plural takes "es".
_O_SINGULARS = frozenset(
    {"tomato", "potato", "hero", "echo", "mosquito", "torpedo", "domino", "buffalo", "mango",
     "volcano", "tornado", "cargo", "veto", "flamingo"}
)
_VOWELS = frozenset("aeiou")


@dataclass(frozen=True)
class Mapped:
    """What an answer was mapped to, and by which rule, so invalid and ambiguous answers can
    be counted and audited rather than silently folded into errors."""

    label: str | None
    how: How
    candidates: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return self.label is not None


_INVALID = Mapped(None, "invalid")


def singularise(word: str) -> str:
    """One lower-case word to its singular by suffix rules.

    The rules only need to send a singular and its plural to the same text, since both sides of
    every comparison go through them; where a rule could mangle a word that is already singular
    (``glass``, ``bus``, ``iris``) the word is left alone. Only ASCII words of four or more
    characters are touched, apart from a short table of irregular plurals.
    """
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if (
        len(word) < 4
        or not word.isascii()
        or not word.isalnum()
        or word in _INVARIANT
        or word.endswith(("ss", "us", "is"))
        or not word.endswith("s")
    ):
        return word
    if word.endswith("ies"):
        if len(word) == 4 or word[:-1] in _IE_SINGULARS:
            return word[:-1]
        return word[:-3] + "y"
    if word.endswith(("ches", "shes")):
        return word[:-1] if word[:-1] in _E_SINGULARS else word[:-2]
    if word.endswith(("sses", "xes")):
        return word[:-2]
    if word.endswith("uses") and len(word) >= 5 and word[-5] not in _VOWELS:
        return word[:-2]
    if word.endswith("oes") and word[:-2] in _O_SINGULARS:
        return word[:-2]
    return word[:-1]


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PREFIX.sub("", text, count=1)
    text = _APOSTROPHES.sub("", text)
    words = _NON_WORD.sub(" ", text).split()
    start = 0
    while start < len(words) - 1 and words[start] in _ARTICLES:
        start += 1
    return [singularise(word) for word in words[start:]]


def normalise(text: str) -> str:
    """The comparison form of a class name, alias or answer (rules in the module docstring)."""
    return " ".join(_words(text))


def collisions(classes: Sequence[str]) -> list[list[str]]:
    """Groups of class names that normalise to the same text (`cat`, `Cat`, `cats`), with or without
    spaces (`t-shirt`, `tshirt`): no answer can name one of them without naming the others."""
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(classes):
        words = _words(name)
        if words:
            groups.setdefault("".join(words), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def check_distinct(classes: Sequence[str]) -> None:
    """Refuse a label set in which two classes cannot be told apart by any answer, before anything is asked."""
    found = collisions(classes)
    if found:
        shown = "; ".join(" = ".join(repr(name) for name in names) for names in found[:5])
        raise UserError(
            f"class names that are the same once answers are normalised (case, plurals, punctuation, spaces): "
            f"{shown}. Every answer naming one would be ambiguous and scored invalid: give them distinct names "
            "(for a folder dataset in an alias file, --label-file folder→label; for a manifest, in its label column)"
        )


def parse_yes_no(text: str) -> bool | None:
    """A yes/no answer from its first word; None when it is neither, so the caller can count
    it as invalid instead of reading "maybe" as a no."""
    words = _words(text)
    if not words:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    return None


def _index(pairs: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for key, label in pairs:
        found.setdefault(key, set()).add(label)
    return {key: frozenset(labels) for key, labels in found.items()}


class AnswerMapper:
    """Maps answers onto one label set.

    Built once per run and called once per answer, so everything that depends only on the
    label set (normalised names, lookup tables, fuzzy choices) is computed here, and an exact
    hit costs a normalisation and a dictionary lookup.
    """

    def __init__(
        self,
        classes: Sequence[str],
        aliases: Mapping[str, Sequence[str]] | None = None,
        fuzzy_threshold: float = 90.0,
    ) -> None:
        self.classes: tuple[str, ...] = tuple(dict.fromkeys(classes))
        if not self.classes:
            raise UserError("The label set is empty: give at least one class name.")
        for name in self.classes:
            self._words_of(name, "class name")
        check_distinct(self.classes)
        if not 0.0 <= fuzzy_threshold <= 100.0:
            raise UserError(
                f"fuzzy_threshold is {fuzzy_threshold}; it is a rapidfuzz ratio, so give a "
                "number from 0 to 100 (100 disables near misses, default 90)."
            )
        aliases = aliases or {}
        unknown = [name for name in aliases if name not in self.classes]
        if unknown:
            raise UserError(
                f"Aliases are given for {unknown}, which are not in the label set; "
                f"key aliases by one of: {list(self.classes)}."
            )
        self._order = {label: position for position, label in enumerate(self.classes)}
        self._threshold = fuzzy_threshold

        names = [(self._words_of(label, "class name"), label) for label in self.classes]
        alias_names = [
            (self._words_of(alias, f"alias of {label!r}"), label)
            for label, spellings in aliases.items()
            for alias in spellings
        ]
        self._whole_answer: tuple[tuple[dict[str, frozenset[str]], bool, How], ...] = (
            (_index((" ".join(w), label) for w, label in names), False, "exact"),
            (_index(("".join(w), label) for w, label in names), True, "exact"),
            (_index((" ".join(w), label) for w, label in alias_names), False, "alias"),
            (_index(("".join(w), label) for w, label in alias_names), True, "alias"),
        )
        every = names + alias_names
        self._phrases = _index(("".join(w), label) for w, label in every)
        self._longest_phrase = max(len(phrase) for phrase in self._phrases)
        fuzzy = _index((" ".join(w), label) for w, label in every)
        self._fuzzy_choices = list(fuzzy)
        self._fuzzy_owners = list(fuzzy.values())

    @staticmethod
    def _words_of(name: str, what: str) -> list[str]:
        words = _words(name)
        if not words:
            raise UserError(
                f"The {what} {name!r} has no letters or digits, so no answer could ever match "
                "it; rename it."
            )
        return words

    def map(self, text: str) -> Mapped:
        """The label `text` names, or why it names none (rules in the module docstring)."""
        words = _words(text)
        if not words:
            return _INVALID
        spaced, compact = " ".join(words), "".join(words)
        for table, is_compact, how in self._whole_answer:
            found = table.get(compact if is_compact else spaced)
            if found:
                return self._resolve(found, how)
        found = self._contained(words)
        if found:
            return self._resolve(found, "contains")
        if len(words) <= FUZZY_MAX_WORDS:
            found = self._nearest(spaced)
            if found:
                return self._resolve(found, "fuzzy")
        return _INVALID

    def _contained(self, words: list[str]) -> frozenset[str]:
        """Classes named by runs of whole words, after dropping runs inside longer runs."""
        spans: list[tuple[int, int, frozenset[str]]] = []
        for start, first in enumerate(words):
            joined = ""
            for end in range(start, len(words)):
                # "a pen" must not spell a class "apen": no run may start at an article.
                if end > start and first in _ARTICLES:
                    break
                joined += words[end]
                if len(joined) > self._longest_phrase:
                    break
                labels = self._phrases.get(joined)
                if labels:
                    spans.append((start, end + 1, labels))
        outermost = [
            labels
            for start, end, labels in spans
            if not any(
                s <= start and end <= e and (s, e) != (start, end) for s, e, _ in spans
            )
        ]
        return frozenset().union(*outermost)

    def _nearest(self, spaced: str) -> frozenset[str]:
        hits = process.extract(
            spaced,
            self._fuzzy_choices,
            scorer=fuzz.ratio,
            score_cutoff=self._threshold,
            limit=None,
        )
        if not hits:
            return frozenset()
        best = max(score for _, score, _ in hits)
        return frozenset().union(
            *(self._fuzzy_owners[index] for _, score, index in hits if score == best)
        )

    def _resolve(self, labels: frozenset[str], how: How) -> Mapped:
        if len(labels) == 1:
            (label,) = labels
            return Mapped(label, how)
        return Mapped(None, "ambiguous", tuple(sorted(labels, key=self._order.__getitem__)))
