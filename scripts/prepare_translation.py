#!/usr/bin/env python3
"""Prepare English-German sentence pairs from gettext catalogs for the translation examples.

Nothing here is committed: the catalogs are fetched at set-up time and the pairs written as JSON lines.

- Django's German UI messages (BSD-3-Clause): ``pip download --no-deps django==VERSION`` (the wheel is only read,
  never installed); the compiled catalogs ``django/**/locale/de/LC_MESSAGES/django.mo`` are parsed with the
  standard library's ``gettext``.
- German messages of Debian command-line tools (GPL; coreutils, tar, grep, sed, findutils, diffutils by default):
  ``apt-get download PACKAGE`` and ``dpkg-deb -x``, then ``usr/share/locale/de/LC_MESSAGES/*.mo``. Without apt the
  catalogs installed under /usr/share/locale are read instead (same files, whatever version is installed).

Filters: plural and context entries are reduced to their message; printf/format placeholders (``%s``, ``%d``,
``%1$s``, ``{name}``), option help lines (``-x, --long ...``), markup, URLs, tabs and multi-line messages are
dropped; keyboard accelerators (``&File``, ``_Open``) are removed; sources must have 3 to ``--max-words`` words and
a translation that differs from them. Duplicates (same source after lower-casing and dropping punctuation) keep
their first translation, and the splits are drawn by a seeded hash of that normalised source, so no sentence is in
two splits.

Output (``--out``, default data/translation): train/validation/test.jsonl with ``source``, ``target`` and
``origin`` (the catalog), ``manifest.json`` (versions, licences, counts) and SOURCES.md (the licences to name in a
card).

Usage: python scripts/prepare_translation.py [--out data/translation] [--test 150] [--validation 80]
"""

from __future__ import annotations

import argparse
import gettext
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DJANGO = "django==5.2.20"
DEBIAN_PACKAGES = ("coreutils", "tar", "grep", "sed", "findutils", "diffutils")
LICENSES = {"django": "BSD-3-Clause (Django Software Foundation and contributors)"}
DEBIAN_LICENSE = "GPL-3.0-or-later (GNU project; translations by the Translation Project)"

PLACEHOLDER = re.compile(r"%(\(\w+\))?[-+ #0']*(\d+\$)?(\*|\d+)?(\.(\*|\d+))?(hh|h|ll|l|L|q|j|z|t)?[a-zA-Z%]"
                         r"|\{[^}]*\}")
BAD = re.compile(r"\t|\n|  |^-|--|https?:|www\.|[<>`\\]|\$\{|\$[A-Za-z]")
ACCELERATOR = re.compile(r"(?<!\w)[_&](?=\w)")


def clean(text: str) -> str | None:
    """The message without accelerators and surrounding space, or None when it must be dropped."""
    if not text or PLACEHOLDER.search(text) or BAD.search(text.strip()):
        return None
    return ACCELERATOR.sub("", text.strip())


def catalog_pairs(raw: bytes) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a compiled .mo catalog (plural forms: the singular; contexts dropped)."""
    catalog = gettext.GNUTranslations(io.BytesIO(raw))._catalog  # type: ignore[attr-defined]
    out = []
    for key, value in catalog.items():
        if isinstance(key, tuple):  # plural: (msgid, n) -> keep the singular form only
            if key[1] != 0:
                continue
            key = key[0]
        if not key or not isinstance(value, str):
            continue
        out.append((key.split("\x04")[-1], value))  # "context\x04message"
    return out


def django_pairs(work: Path) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """Pairs from the Django wheel's German catalogs, and the wheel's version."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", DJANGO, "-d", str(work)],
                   check=True)
    wheel = next(work.glob("Django-*.whl"), None) or next(work.glob("django-*.whl"))
    pairs = []
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if name.endswith("locale/de/LC_MESSAGES/django.mo"):
                pairs += [(s, t, "django") for s, t in catalog_pairs(archive.read(name))]
    return pairs, {"django": wheel.name}


def debian_pairs(work: Path, packages: list[str]) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """Pairs from the German catalogs of Debian packages (downloaded with apt, else the installed ones)."""
    root = work / "debian"
    versions: dict[str, str] = {}
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        root.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["apt-get", "download", *packages], cwd=root, capture_output=True, text=True)
        for deb in sorted(root.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root / "tree")], check=True)
            versions[deb.name.split("_")[0]] = deb.name
        if result.returncode != 0 and not versions:
            print(f"apt-get download failed ({result.stderr.strip()[:200]}); reading installed catalogs",
                  file=sys.stderr)
    base = root / "tree" / "usr/share/locale/de/LC_MESSAGES" if versions else Path("/usr/share/locale/de/LC_MESSAGES")
    pairs = []
    for package in packages:
        path = base / f"{package}.mo"
        if path.is_file():
            pairs += [(s, t, package) for s, t in catalog_pairs(path.read_bytes())]
            versions.setdefault(package, "installed catalog")
    return pairs, versions


def normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def select(pairs: list[tuple[str, str, str]], min_words: int, max_words: int) -> list[dict[str, str]]:
    """Filtered pairs, the first translation of every normalised source kept."""
    seen: set[str] = set()
    rows = []
    for source, target, origin in pairs:
        s, t = clean(source), clean(target)
        if s is None or t is None or not min_words <= len(s.split()) <= max_words or normalised(s) == normalised(t):
            continue
        key = normalised(s)
        if not key or key in seen:
            continue
        seen.add(key)
        rows.append({"source": s, "target": t, "origin": origin})
    return rows


def split(rows: list[dict[str, str]], test: int, validation: int, seed: int) -> dict[str, list[dict[str, str]]]:
    """Test, validation and train by a seeded hash of the normalised source (stable when catalogs change)."""
    def rank(row: dict[str, str]) -> str:
        return hashlib.sha256(f"{seed}:{normalised(row['source'])}".encode()).hexdigest()

    ordered = sorted(rows, key=rank)
    return {"test": ordered[:test], "validation": ordered[test:test + validation],
            "train": ordered[test + validation:]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/translation"))
    parser.add_argument("--sources", default="django,debian", help="comma-separated: django, debian")
    parser.add_argument("--packages", default=",".join(DEBIAN_PACKAGES), help="Debian packages (comma-separated)")
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--validation", type=int, default=80)
    parser.add_argument("--min-words", type=int, default=3)
    parser.add_argument("--max-words", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sources = {s.strip() for s in args.sources.split(",") if s.strip()}
    pairs: list[tuple[str, str, str]] = []
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cardgen-translation-") as tmp:
        if "django" in sources:
            found, v = django_pairs(Path(tmp))
            pairs, versions = pairs + found, {**versions, **v}
        if "debian" in sources:
            found, v = debian_pairs(Path(tmp), [p.strip() for p in args.packages.split(",") if p.strip()])
            pairs, versions = pairs + found, {**versions, **v}
    rows = select(pairs, args.min_words, args.max_words)
    if len(rows) < args.test + args.validation + 50:
        sys.exit(f"only {len(rows)} pairs passed the filters: too few for the splits asked")
    splits = split(rows, args.test, args.validation, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, items in splits.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items)
        (args.out / f"{name}.jsonl").write_text(text, encoding="utf-8")
    origins = sorted({r["origin"] for r in rows})
    licenses = {o: LICENSES.get(o, DEBIAN_LICENSE) for o in origins}
    manifest = {"sources": versions, "licenses": licenses, "pairs_read": len(pairs), "pairs_kept": len(rows),
                "splits": {k: len(v) for k, v in splits.items()}, "seed": args.seed,
                "filters": {"min_words": args.min_words, "max_words": args.max_words}}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    lines = ["# English-German pairs from gettext catalogs", "", "Prepared by scripts/prepare_translation.py; not "
             "redistributed with cardgen.", ""] + [f"- {o}: {licenses[o]} ({versions.get(o, '')})" for o in origins]
    (args.out / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(rows)} pairs ({', '.join(f'{k} {len(v)}' for k, v in splits.items())}) -> {args.out}")


if __name__ == "__main__":
    main()
