"""The answer-mapping contract: what a model must say for its answer to count as a class."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from classbench.answers import AnswerMapper, Mapped, normalise, parse_yes_no, singularise
from classbench.errors import UserError

# Class name -> other spellings of it a model may answer with (plurals, run-together forms).
SPELLINGS: dict[str, list[str]] = {
    "ak47": ["ak47", "AK-47", "ak47s", "AK 47"],
    "t-shirt": ["t-shirt", "T-Shirts", "tshirt", "t shirt"],
    "tennis-ball": ["tennis-ball", "tennis balls", "tennis_ball"],
    "faces easy": ["faces easy", "faces-easy", "Faces_Easy"],
    "mountain bike": ["mountain bike", "mountain bikes", "mountain-bike"],
    "bike": ["bike", "bikes"],
    "butterfly": ["butterfly", "butterflies"],
    "glass": ["glass", "glasses"],
    "bus": ["bus", "buses"],
    "box": ["box", "boxes"],
    "cactus": ["cactus", "cacti", "cactuses"],
    "iris": ["iris"],
    "necktie": ["necktie", "neckties"],
    "tomato": ["tomato", "tomatoes"],
    "goose": ["goose", "geese"],
    "computer-mouse": ["computer-mouse", "computer mice"],
    "swiss-army-knife": ["swiss army knife", "swiss-army-knives"],
    "cockroach": ["cockroach", "cockroaches"],
    "hot-dog": ["hot dog", "hot-dogs", "hotdogs"],
    "yo-yo": ["yo-yo", "yoyo", "yo yo"],
    "people": ["people"],
    "scissors": ["scissors", "scissor"],
    "movie": ["movie", "movies"],
    "cat": ["cat", "cats", "cat's"],
}
CLASSES = list(SPELLINGS)
MAPPER = AnswerMapper(CLASSES)

CASINGS = [str.lower, str.upper, str.title, str.capitalize]
WRAPS = ["{}", "**{}**", '"{}"', "'{}'", "`{}`", "{}.", " {}!\n", "\u201c{}\u201d", "*{}*"]
PREFIXES = ["", "Answer: ", "answer:", "**Answer:** ", "Final answer: ", "Label: "]
ARTICLES = ["", "a ", "an ", "the ", "The "]


def _phrase_in(words: list[str], phrase: str) -> bool:
    """Whether some run of whole words, joined, spells `phrase` (the contains rule)."""
    return any(
        "".join(words[start:end]) == phrase
        for start in range(len(words))
        for end in range(start + 1, len(words) + 1)
    )


@given(
    st.sampled_from([(label, form) for label, forms in SPELLINGS.items() for form in forms]),
    st.sampled_from(CASINGS),
    st.sampled_from(WRAPS),
    st.sampled_from(PREFIXES),
    st.sampled_from(ARTICLES),
)
def test_every_class_maps_to_itself_under_surface_variation(pair, casing, wrap, prefix, article):
    label, form = pair
    answer = prefix + wrap.format(casing(article + form))
    assert MAPPER.map(answer) == Mapped(label, "exact")


@pytest.mark.parametrize("label", CLASSES)
def test_every_class_name_maps_to_itself_verbatim(label):
    assert MAPPER.map(label) == Mapped(label, "exact")


@given(
    st.sampled_from(CLASSES),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),
    st.booleans(),
)
def test_containment_never_matches_inside_a_longer_word(label, fragment, before):
    glued = fragment + label.replace("-", "") if before else label.replace("-", "") + fragment
    glued = glued.replace(" ", "")
    known = {normalise(name).replace(" ", "") for name in CLASSES}
    assume(normalise(glued) not in known)
    mapped = MAPPER.map(f"I can see {glued} in this picture")
    assert mapped == Mapped(None, "invalid")


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("a caterpillar on a leaf", None),
        ("the concatenated image", None),
        ("a bicycle", None),
        ("a busy street", None),
        ("a big cat on a mat", "cat"),
        ("I believe this is a cat.", "cat"),
    ],
)
def test_containment_respects_word_boundaries(answer, label):
    mapped = MAPPER.map(answer)
    assert mapped.label == label
    assert mapped.how == ("contains" if label else "invalid")


def test_longest_match_wins_over_names_inside_it():
    assert MAPPER.map("It's a red mountain bike.") == Mapped("mountain bike", "contains")
    assert MAPPER.map("a yellow tennis ball") == Mapped("tennis-ball", "contains")
    assert MAPPER.map("a photo of people eating hot dogs") == Mapped(
        None, "ambiguous", ("hot-dog", "people")
    )


def test_a_shorter_name_outside_the_longer_match_is_still_counted():
    assert MAPPER.map("a bike next to a mountain bike") == Mapped(
        None, "ambiguous", ("mountain bike", "bike")
    )


@given(
    st.sampled_from(CLASSES),
    st.sampled_from(CLASSES),
    st.sampled_from(["{} or {}", "either a {} or a {}", "{}, {}"]),
)
def test_two_class_names_in_one_answer_are_ambiguous(first, second, template):
    nested = normalise(first) in normalise(second) or normalise(second) in normalise(first)
    assume(not nested)
    mapped = MAPPER.map(template.format(first, second))
    assert mapped.label is None
    assert mapped.how == "ambiguous"
    assert set(mapped.candidates) == {first, second}


@given(st.text(max_size=60))
def test_a_mapped_label_is_always_in_the_label_set(text):
    mapped = MAPPER.map(text)
    assert mapped.valid == (mapped.label is not None)
    if mapped.how in ("invalid", "ambiguous"):
        assert mapped.label is None
    else:
        assert mapped.label in CLASSES
    if mapped.how == "ambiguous":
        assert len(mapped.candidates) >= 2
        assert set(mapped.candidates) <= set(CLASSES)
    if mapped.how == "contains":
        phrase = normalise(mapped.label).replace(" ", "")
        assert _phrase_in(normalise(text).split(), phrase)


@given(st.text(alphabet="qxzj ", max_size=40))
def test_letters_near_no_class_are_invalid(text):
    assert MAPPER.map(text) == Mapped(None, "invalid")


@given(st.text(max_size=40))
def test_normalise_is_idempotent(text):
    assert normalise(normalise(text)) == normalise(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**The Tennis-Balls.**", "tennis ball"),
        ("Answer: an AK_47", "ak 47"),
        ("  'Butterflies'  ", "butterfly"),
        ("jeans/shirts", "jean shirt"),
        ("Final Answer: the cat", "cat"),
        ("classification: cat", "classification cat"),
        ("the", "the"),
        ("\uff23\uff21\uff34", "cat"),
        ("", ""),
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("plural", "singular"),
    [
        ("cats", "cat"), ("boxes", "box"), ("butterflies", "butterfly"), ("glasses", "glass"),
        ("buses", "bus"), ("houses", "house"), ("ties", "tie"), ("movies", "movie"),
        ("watches", "watch"), ("tomatoes", "tomato"), ("shoes", "shoe"), ("mice", "mouse"),
        ("glass", "glass"), ("bus", "bus"), ("iris", "iris"), ("cactus", "cactus"),
        ("series", "series"), ("yes", "yes"), ("ak47s", "ak47"), ("katzen", "katzen"),
    ],
)
def test_singularise(plural, singular):
    assert singularise(plural) == singular
    assert singularise(singular) == singular


def test_aliases_map_to_their_class():
    mapper = AnswerMapper(
        ["ak47", "t-shirt", "bike"], {"ak47": ["kalashnikov", "assault rifle"], "t-shirt": ["tee"]}
    )
    assert mapper.map("Kalashnikov") == Mapped("ak47", "alias")
    assert mapper.map("an assault rifles") == Mapped("ak47", "alias")
    assert mapper.map("a white tee") == Mapped("t-shirt", "contains")
    assert mapper.map("an AK-47 assault rifle") == Mapped("ak47", "contains")


def test_a_class_name_beats_another_class_alias():
    mapper = AnswerMapper(["bicycle", "mountain bike"], {"mountain bike": ["bicycle"]})
    assert mapper.map("bicycle") == Mapped("bicycle", "exact")


def test_an_alias_shared_by_two_classes_is_ambiguous():
    mapper = AnswerMapper(
        ["mountain bike", "touring bike"],
        {"mountain bike": ["bicycle"], "touring bike": ["bicycle"]},
    )
    assert mapper.map("Bicycle") == Mapped(None, "ambiguous", ("mountain bike", "touring bike"))


def test_classes_that_normalise_alike_are_refused_before_any_answer():
    with pytest.raises(UserError, match="'Glass' = 'glasses'"):
        AnswerMapper(["Glass", "glasses"])


def test_near_misses_in_short_answers_are_fuzzy():
    assert MAPPER.map("buterfly") == Mapped("butterfly", "fuzzy")
    assert MAPPER.map("Cockroch.") == Mapped("cockroach", "fuzzy")


def test_near_misses_in_long_answers_are_invalid():
    assert MAPPER.map("I think this picture shows a buterfly") == Mapped(None, "invalid")


def test_a_fuzzy_tie_between_classes_is_ambiguous():
    mapper = AnswerMapper(["motorbike a", "motorbike b"])
    assert mapper.map("motorbike c") == Mapped(None, "ambiguous", ("motorbike a", "motorbike b"))


def test_fuzzy_threshold_is_respected():
    strict = AnswerMapper(["butterfly"], fuzzy_threshold=100)
    assert strict.map("buterfly") == Mapped(None, "invalid")


@pytest.mark.parametrize("answer", ["", "   ", "**", "I don't know", "none of these", "\u2026"])
def test_unrecognised_answers_are_invalid(answer):
    mapped = MAPPER.map(answer)
    assert mapped == Mapped(None, "invalid")
    assert not mapped.valid


def test_negation_is_not_understood():
    assert MAPPER.map("not a cat") == Mapped("cat", "contains")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", True), ("yes, it is", True), ("**YES**", True), ("Yeah", True), ("yep!", True),
        ("True", True), ("Answer: yes", True), ("no, it is not", False), ("No.", False),
        ("nope", False), ("false", False), ("maybe", None), ("", None), ("I think yes", None),
        ("yesterday", None), ("noon", None),
    ],
)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


@pytest.mark.parametrize(
    ("classes", "aliases", "fragment"),
    [
        ([], None, "empty"),
        (["cat", "?!"], None, "'?!'"),
        (["cat"], {"dog": ["puppy"]}, "'dog'"),
        (["cat"], {"cat": ["--"]}, "alias of 'cat'"),
    ],
)
def test_unusable_label_sets_are_rejected_with_the_reason(classes, aliases, fragment):
    with pytest.raises(UserError, match=fragment):
        AnswerMapper(classes, aliases)


def test_an_out_of_range_threshold_is_rejected():
    with pytest.raises(UserError, match="0 to 100"):
        AnswerMapper(["cat"], fuzzy_threshold=150)
