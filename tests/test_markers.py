"""Generated sections and front matter: merging a re-rendered card into a hand-edited one."""

from __future__ import annotations

import pytest

from cardgen.card.markers import has_markers, join_front_matter, merge_generated, section, split_front_matter
from cardgen.errors import CardgenError


def card(front: str, *parts: str) -> str:
    return f"---\n{front}---\n" + "".join(parts)


NEW = card(
    "license: mit\ntags:\n- cardgen\n",
    "# my-model\n\n",
    section("summary", "Fine-tuned on reviews."),
    "\n",
    section("results", "| metric | value |\n|---|---|\n| accuracy | 0.91 |"),
)


def test_split_front_matter() -> None:
    meta, body = split_front_matter(NEW)
    assert meta == {"license": "mit", "tags": ["cardgen"]}
    assert body.startswith("# my-model")
    assert split_front_matter("no front matter\n") == ({}, "no front matter\n")
    assert split_front_matter("---\n{}\n---\nbody\n") == ({}, "body\n")


def test_split_front_matter_rejects_bad_yaml() -> None:
    with pytest.raises(CardgenError, match="not valid YAML"):
        split_front_matter("---\nkey: [unclosed\n---\nbody\n")
    with pytest.raises(CardgenError, match="must be a mapping"):
        split_front_matter("---\n- a\n- b\n---\nbody\n")


def test_join_front_matter_round_trips() -> None:
    meta, body = split_front_matter(NEW)
    assert split_front_matter(join_front_matter(meta, body)) == (meta, body)
    assert join_front_matter({}, "body\n") == "body\n"


def test_merge_into_itself_is_identity() -> None:
    assert merge_generated(NEW, NEW) == NEW


def test_no_markers_in_existing_returns_new() -> None:
    assert merge_generated("---\nlicense: apache-2.0\n---\n# hand written\n", NEW) == NEW
    assert not has_markers("# hand written\n")
    assert has_markers(NEW)


def test_human_text_kept_and_generated_sections_replaced() -> None:
    edited = card(
        "license: mit\ntags:\n- cardgen\n",
        "# my-model\n\nA paragraph a person wrote.\n\n",
        section("summary", "Fine-tuned on reviews."),
        "\n## Limitations (written by hand)\nDo not use for medical text.\n\n",
        section("results", "| metric | value |\n|---|---|\n| accuracy | 0.80 |"),
        "\nThanks to the annotators.\n",
    )
    merged = merge_generated(edited, NEW)
    assert "A paragraph a person wrote." in merged
    assert "Do not use for medical text." in merged
    assert "Thanks to the annotators." in merged
    assert "| accuracy | 0.91 |" in merged and "0.80" not in merged
    # order of human text and sections is the existing card's
    assert merged.index("Limitations") < merged.index("0.91") < merged.index("Thanks")


def test_front_matter_new_keys_win_old_kept() -> None:
    existing = card(
        "license: apache-2.0\nlanguage: en\nextra_gated_prompt: ask first\n",
        section("summary", "old"),
    )
    merged = merge_generated(existing, NEW)
    meta, _ = split_front_matter(merged)
    assert meta["license"] == "mit"  # ours wins
    assert meta["language"] == "en" and meta["extra_gated_prompt"] == "ask first"  # theirs kept
    assert list(meta)[:2] == ["license", "tags"]  # new keys first, in the new card's order


def test_sections_only_in_new_are_inserted_after_their_predecessor() -> None:
    existing = card("license: mit\n", "intro\n", section("summary", "old"), "outro\n")
    new = card(
        "license: mit\n",
        section("summary", "S"),
        section("training", "T"),
        section("results", "R"),
    )
    merged = merge_generated(existing, new)
    body = split_front_matter(merged)[1]
    assert body.index("intro") < body.index("\nS\n") < body.index("\nT\n") < body.index("\nR\n") < body.index(
        "outro")


def test_section_missing_from_new_is_kept_and_first_new_section_goes_before_the_first() -> None:
    existing = card("license: mit\n", "intro\n", section("results", "R-old"), section("legacy", "L"))
    new = card("license: mit\n", section("summary", "S"), section("results", "R-new"))
    body = split_front_matter(merge_generated(existing, new))[1]
    assert "L\n" in body and "R-new" in body and "R-old" not in body
    assert body.index("intro") < body.index("S\n") < body.index("R-new")


@pytest.mark.parametrize(
    "bad, message",
    [
        ("<!-- cardgen:begin a -->\nx\n", "never ends"),
        ("x\n<!-- cardgen:end a -->\n", "never began"),
        ("<!-- cardgen:begin a -->\n<!-- cardgen:begin b -->\n<!-- cardgen:end b -->\n", "inside"),
        ("<!-- cardgen:begin a -->\n<!-- cardgen:end b -->\n", "'a' is open"),
        (section("a", "1") + section("a", "2"), "appears twice"),
    ],
)
def test_malformed_markers_are_errors(bad: str, message: str) -> None:
    with pytest.raises(CardgenError, match=message) as info:
        merge_generated(bad, NEW)
    assert "--overwrite" in (info.value.hint or "")


def test_section_without_trailing_newline() -> None:
    existing = "intro\n<!-- cardgen:begin summary -->\nold\n<!-- cardgen:end summary -->"
    merged = merge_generated(existing, NEW)
    assert "<!-- cardgen:end summary -->\n<!-- cardgen:begin results -->" in merged
    assert "Fine-tuned on reviews." in merged
