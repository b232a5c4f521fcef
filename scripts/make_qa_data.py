#!/usr/bin/env python3
"""Make a small SQuAD-format extractive QA data set for examples/qa.yaml (no QA data ships offline).

Each context is a short biography paragraph about two or three invented people (the distractors make the model
read the question), built from sentence templates; each question asks for one planted fact, and its
``answer_start`` is the character offset where the answer was written into the context. Some answers have more
than one acceptable gold text (a full name and the surname, "1887" and "in 1887"), as SQuAD's evaluation sets do.
With ``--unanswerable P`` a share P of the questions ask for a fact the context does not state (SQuAD v2 style,
empty answers; set ``qa.version_2: true`` then).

Rows are written as JSON lines in the layout of the Hub's ``squad`` data set::

    {"id": ..., "title": ..., "context": ..., "question": ..., "answers": {"text": [...], "answer_start": [...]}}

Train, validation and test are generated from different seeds, so no context is shared between splits.

Usage: python scripts/make_qa_data.py [--out data/qa] [--train 1200] [--validation 200] [--test 300]
       [--unanswerable 0.0] [--seed 7]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
from pathlib import Path

FIRST = ["Marie", "Jonas", "Amara", "Tomas", "Leila", "Henrik", "Sofia", "Mateo", "Ingrid", "Kofi", "Elena",
         "Rafael", "Yuki", "Anders", "Nadia", "Pieter", "Greta", "Omar", "Clara", "Viktor", "Hana", "Lucas",
         "Freya", "Dmitri", "Alma", "Bruno", "Irene", "Emil", "Zara", "Felix", "Olga", "Tariq", "Ada", "Hugo",
         "Mira", "Anton", "Lina", "Oskar", "Rosa", "Samuel"]
LAST = ["Dubois", "Lindqvist", "Okafor", "Novak", "Haddad", "Brandt", "Moreau", "Castillo", "Berg", "Mensah",
        "Petrova", "Almeida", "Tanaka", "Holm", "Karimi", "de Vries", "Weber", "Farouk", "Rossi", "Sokolov",
        "Kim", "Laurent", "Nyberg", "Ivanova", "Costa", "Keller", "Marino", "Fischer", "Sato", "Jensen",
        "Horvat", "Quinn", "Abbott", "Varga", "Ortega", "Lund", "Becker", "Silva", "Nagy", "Eriksen"]
CITIES = ["Lisbon", "Krakow", "Accra", "Montreal", "Bergen", "Valparaiso", "Osaka", "Tbilisi", "Ghent",
          "Porto", "Tartu", "Cork", "Lyon", "Trieste", "Uppsala", "Dakar", "Quito", "Adelaide", "Leipzig",
          "Bologna", "Tampere", "Graz", "Cusco", "Nairobi", "Aarhus", "Seville", "Riga", "Halifax", "Brno",
          "Kyoto"]
FIELDS = ["astronomy", "botany", "chemistry", "geology", "linguistics", "mathematics", "medicine",
          "architecture", "economics", "music", "philosophy", "zoology", "engineering", "history"]
ORG_KINDS = ["Institute", "Academy", "Observatory", "Museum", "Laboratory", "Conservatory", "Society"]
ORG_NAMES = ["Royal", "Northern", "Central", "National", "Coastal", "Municipal", "Imperial", "Free", "Eastern"]
PROFESSIONS = ["painter", "surgeon", "engineer", "poet", "violinist", "architect", "journalist", "chemist"]
WORK_A = ["The", "A"]
WORK_B = ["Silent", "Northern", "Hidden", "Long", "Golden", "Broken", "Distant", "Quiet", "Winter", "Open"]
WORK_C = ["Harbour", "Garden", "Atlas", "Letters", "River", "Orchard", "Lantern", "Machine", "Archive", "Bridge"]


class Paragraph:
    """A context under construction: sentences appended with the character offsets of their planted facts."""

    def __init__(self) -> None:
        self.text = ""

    def add(self, parts: list[tuple[str, str | None]]) -> dict[str, int]:
        """Append a sentence given as (text, fact name or None) pieces; return each fact's character offset."""
        if self.text:
            self.text += " "
        where = {}
        for piece, fact in parts:
            if fact:
                where[fact] = len(self.text)
            self.text += piece
        return where


def article(noun: str) -> str:
    """The noun with its indefinite article."""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def make_person(rng: random.Random, used: set[str]) -> dict[str, str]:
    while True:  # first and last names unique within a paragraph, so a short name is never ambiguous
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if first not in used and last not in used:
            used.update((first, last))
            break
    return {
        "first": first, "last": last, "name": f"{first} {last}", "city": rng.choice(CITIES),
        "year": str(rng.randint(1820, 1990)), "field": rng.choice(FIELDS),
        "org": f"{rng.choice(ORG_NAMES)} {rng.choice(ORG_KINDS)} of {rng.choice(CITIES)}",
        "work": f"{rng.choice(WORK_A)} {rng.choice(WORK_B)} {rng.choice(WORK_C)}",
        "work_year": "", "spouse": "", "profession": rng.choice(PROFESSIONS), "move_city": rng.choice(CITIES),
    }


def facts_of(p: dict[str, str], rng: random.Random, used: set[str]) -> list[tuple[str, list[tuple[str, str | None]],
                                                                                   str, list[str], str]]:
    """(fact key, sentence pieces, question, gold answers, the planted answer's fact name) for one person."""
    p["work_year"] = str(int(p["year"]) + rng.randint(22, 60))
    spouse = make_person(rng, used)
    p["spouse"] = spouse["name"]
    name = p["name"]
    return [
        ("born_city", [(f"{name} was born in ", None), (p["city"], "a"), (f" in {p['year']}.", None)],
         rng.choice([f"Where was {name} born?", f"In which city was {name} born?"]), [p["city"]], "a"),
        ("born_year", [(f"{name} was born in {p['city']} ", None), ("in " + p["year"], "a"), (".", None)],
         rng.choice([f"When was {name} born?", f"In what year was {name} born?"]), ["in " + p["year"], p["year"]],
         "a"),
        ("field", [(f"{p['first']} studied ", None), (p["field"], "a"), (" at the ", None), (p["org"], "b"),
                   (".", None)],
         rng.choice([f"What did {name} study?", f"Which subject did {name} study?"]), [p["field"]], "a"),
        ("org", [(f"After studying {p['field']}, {p['last']} joined the ", None), (p["org"], "a"), (".", None)],
         rng.choice([f"Which institution did {name} join?", f"Where did {name} work after studying?"]),
         [p["org"], "the " + p["org"]], "a"),
        ("work", [(f"{name}'s best-known work, ", None), (p["work"], "a"), (f", appeared in {p['work_year']}.",
                                                                              None)],
         rng.choice([f"What is the title of {name}'s best-known work?", f"Which work is {name} best known for?"]),
         [p["work"]], "a"),
        ("spouse", [(f"{p['first']} married ", None), (spouse["name"], "a"),
                    (f", {article(spouse['profession'])} from {spouse['city']}.", None)],
         rng.choice([f"Who did {name} marry?", f"Whom did {name} marry?"]), [spouse["name"], spouse["last"]],
         "a"),
        ("move", [(f"Late in life, {p['last']} moved to ", None), (p["move_city"], "a"), (".", None)],
         rng.choice([f"Where did {name} move late in life?", f"To which city did {name} move late in life?"]),
         [p["move_city"]], "a"),
    ]


def alias_starts(context: str, planted_at: int, planted: str, golds: list[str]) -> list[int]:
    """answer_start of each gold text: the planted one where it was written, the others inside or near it."""
    starts = []
    for gold in golds:
        if gold == planted:
            starts.append(planted_at)
            continue
        inside = planted.find(gold)
        if inside >= 0:
            starts.append(planted_at + inside)
            continue
        around = context.rfind(gold, 0, planted_at + len(planted))
        starts.append(around)
    return starts


def make_split(n_questions: int, seed: int, unanswerable: float, prefix: str) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    while len(rows) < n_questions:
        used: set[str] = set()
        people = [make_person(rng, used) for _ in range(rng.choice([2, 2, 3]))]
        para = Paragraph()
        asked: list[tuple[str, list[str], list[int]]] = []
        missing: list[str] = []
        for person in people:
            facts = facts_of(person, rng, used)
            rng.shuffle(facts)
            keep = facts[: rng.randint(2, 4)]
            para.add([(f"{person['name']} was {article(person['profession'])}.", None)])
            # Birth city and birth year come from sentences that mention both: keep at most one of them.
            seen_birth = False
            for key, parts, question, golds, fact in keep:
                if key.startswith("born"):
                    if seen_birth:
                        continue
                    seen_birth = True
                where = para.add(parts)
                planted = next(piece for piece, f in parts if f == fact)
                asked.append((question, golds, alias_starts(para.text, where[fact], planted, golds)))
            stated = {k for k, *_ in keep}
            # Facts told by no sentence make unanswerable questions; the study and institution sentences mention
            # each other's fact and either birth sentence gives city and year, so those never count as missing.
            linked = {"field", "org"} if stated & {"field", "org"} else set()
            for key, _, question, _, _ in facts[len(keep):]:
                if key not in stated and key not in linked and not key.startswith("born"):
                    missing.append(question)
        title = people[0]["name"]
        rng.shuffle(asked)
        for question, golds, starts in asked[: rng.randint(1, 3)]:
            rows.append(_row(prefix, len(rows), title, para.text, question, golds, starts))
        if unanswerable > 0 and missing and rng.random() < unanswerable * 2:
            rows.append(_row(prefix, len(rows), title, para.text, rng.choice(missing), [], []))
    return rows[:n_questions]


def _row(prefix: str, index: int, title: str, context: str, question: str, golds: list[str],
         starts: list[int]) -> dict[str, object]:
    for gold, start in zip(golds, starts, strict=True):
        assert context[start:start + len(gold)] == gold, (gold, start, context)
    return {"id": f"{prefix}-{index:05d}", "title": title, "context": context, "question": question,
            "answers": {"text": golds, "answer_start": starts}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/qa"))
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--validation", type=int, default=200)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--unanswerable", type=float, default=0.0, help="share of questions without an answer")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for offset, (name, n) in enumerate((("train", args.train), ("validation", args.validation),
                                        ("test", args.test))):
        rows = make_split(n, args.seed * 1000 + offset, args.unanswerable, name)
        with tempfile.NamedTemporaryFile("w", delete=False, dir=args.out, suffix=".tmp", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        Path(fh.name).replace(args.out / f"{name}.jsonl")
        empty = sum(not r["answers"]["text"] for r in rows)  # type: ignore[index]
        digest = hashlib.sha256((args.out / f"{name}.jsonl").read_bytes()).hexdigest()[:12]
        print(f"{name:>10}: {len(rows):5d} questions ({empty} unanswerable), sha256 {digest}")


if __name__ == "__main__":
    main()
