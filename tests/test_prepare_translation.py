"""scripts/prepare_translation.py's filters, de-duplication and splits, on catalogs built in the test (the real
catalogs are fetched by `make data` and used by the slow example tests)."""

from __future__ import annotations

import importlib.util
import io
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("prepare_translation", ROOT / "scripts" / "prepare_translation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mo_file(entries: dict[str, str]) -> bytes:
    """A little-endian GNU .mo catalog (format revision 0) holding ``entries``."""
    keys = sorted(entries)
    ids = [k.encode() for k in keys]
    strs = [entries[k].encode() for k in keys]
    start = 7 * 4 + 16 * len(keys)
    offsets, blob = [], b""
    for item in ids + strs:
        offsets.append((len(item), start + len(blob)))
        blob += item + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, 0)
    table = b"".join(struct.pack("<2I", n, o) for n, o in offsets)
    return header + table + blob


@pytest.mark.parametrize(("text", "kept"), [
    ("That page number is not an integer", "That page number is not an integer"),
    ("cannot open %s for reading", None),
    ("%1$s: invalid option", None),
    ("%.*s: ARGP_HELP_FMT parameter requires a value", None),
    ("%-*s  %s", None),
    ("Ensure this value has at most {max} characters", None),
    ("  -a, --all     do not ignore entries", None),
    ("Try 'ls --help' for more information.", None),
    ("see <https://www.gnu.org/>", None),
    ("&Open the file now", "Open the file now"),
    ("_Save all changes", "Save all changes"),
    ("line one\nline two", None),
])
def test_messages_with_placeholders_options_or_markup_are_dropped(script, text: str, kept: str | None) -> None:  # noqa: ANN001
    assert script.clean(text) == kept


def test_catalog_pairs_read_a_compiled_catalog(script) -> None:  # noqa: ANN001
    raw = mo_file({"": "Content-Type: text/plain; charset=UTF-8\n", "Enter a valid date.": "Bitte ein gültiges Datum "
                   "eingeben.", "ctx\x04Date out of range": "Datum außerhalb des zulässigen Bereichs"})
    import gettext

    assert gettext.GNUTranslations(io.BytesIO(raw)).gettext("Enter a valid date.").startswith("Bitte")
    pairs = dict(script.catalog_pairs(raw))
    assert pairs["Date out of range"] == "Datum außerhalb des zulässigen Bereichs"  # the context is dropped
    assert "" not in pairs


def test_duplicates_keep_the_first_translation_and_splits_share_no_source(script) -> None:  # noqa: ANN001
    pairs = [("Enter a valid date.", "Bitte ein gültiges Datum eingeben.", "django"),
             ("enter a valid date", "Gültiges Datum eingeben", "coreutils"),  # same source once normalised
             ("Only two", "Nur zwei", "django"),  # too short
             ("same text here", "same text here", "tar")]  # untranslated
    pairs += [(f"error number {i} while reading", f"Fehler Nummer {i} beim Lesen", "tar") for i in range(300)]
    rows = script.select(pairs, 3, 16)
    assert rows[0]["target"] == "Bitte ein gültiges Datum eingeben." and len(rows) == 301
    splits = script.split(rows, 40, 20, seed=0)
    assert [len(splits[k]) for k in ("test", "validation", "train")] == [40, 20, 241]
    keys = {k: {script.normalised(r["source"]) for r in v} for k, v in splits.items()}
    assert not (keys["test"] & keys["train"]) and not (keys["validation"] & keys["train"])
    assert script.split(rows, 40, 20, seed=0) == splits  # deterministic
    assert script.split(rows, 40, 20, seed=1)["test"] != splits["test"]
