"""Context -> Jinja body + front matter -> card text, written atomically.

Templates render in Jinja's sandbox with StrictUndefined, so a missing value fails loudly instead of printing
blank; arithmetic that would build huge values is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cardgen.card.comparison import comparison_context
from cardgen.card.context import build_context
from cardgen.card.format import fmt, md_escape
from cardgen.card.metadata import front_matter
from cardgen.errors import TemplateError
from cardgen.record import Comparison, RunRecord

DEFAULT_TEMPLATE = "model_card.md.j2"


def templates_dir() -> Path:
    """Where the built-in templates are: inside the wheel, or the repository's top-level templates/."""
    package = Path(__file__).resolve().parent.parent  # cardgen/ (this file is cardgen/card/render.py)
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / DEFAULT_TEMPLATE).is_file():
            return candidate
    raise TemplateError("cardgen's built-in templates are missing", "reinstall cardgen")  # pragma: no cover


# A template may not build values bigger than this (characters, items or digits): no memory or CPU bombs.
MAX_TEMPLATE_VALUE = 1_000_000


def template_environment(search_dirs: list[Path]) -> Any:
    from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class CardSandbox(ImmutableSandboxedEnvironment):  # type: ignore[misc]
        # Jinja's sandbox blocks attribute tricks, not arithmetic: `'x' * 10**9` or `10 ** 10 ** 10` would still
        # exhaust memory or CPU. Intercepted operators are also never constant-folded at compile time.
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, (int, float)) and (
                    abs(right) > 64 or isinstance(left, int) and abs(left).bit_length() * abs(right) > 4096):
                raise SecurityError(f"the power {left!r:.20} ** {right!r:.20} is too large")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_TEMPLATE_VALUE:
                        raise SecurityError("repeating a value that many times is not allowed")
            return super().call_binop(context, operator, left, right)

    env = CardSandbox(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in search_dirs]),
        undefined=StrictUndefined,
        autoescape=False,  # Markdown, not HTML: data texts are escaped by md_escape when the context is built
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["md_escape"] = md_escape
    env.globals.pop("lipsum", None)  # no use in a card, and lipsum(10**6) is a free CPU and memory bomb
    return env


def render_body(record: RunRecord, template: str | Path | None = None) -> str:
    """The card body (Markdown, no front matter) from the built-in template or a user template file."""
    from jinja2 import TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError, TemplateNotFound

    builtin = templates_dir()
    if template is None:
        dirs, name = [builtin], DEFAULT_TEMPLATE
    else:
        path = Path(template)
        if not path.is_file():
            raise TemplateError(f"template {path} does not exist", "check the --template path")
        dirs, name = [path.resolve().parent, builtin], path.name
    env = template_environment(dirs)
    context = build_context(record)
    try:
        return str(env.get_template(name).render(**context))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {exc.filename or name} has a syntax error on line {exc.lineno}: {exc.message}",
                            "fix the template") from exc
    except UndefinedError as exc:
        raise TemplateError(f"template {name} uses an undefined value: {exc.message}",
                            "use only the names cardgen provides (see templates/model_card.md.j2)") from exc
    except SecurityError as exc:
        raise TemplateError(f"template {name} tried an unsafe operation: {exc}",
                            "templates may only print the values cardgen provides") from exc
    except TemplateNotFound as exc:
        raise TemplateError(f"template {name} includes {exc.name}, which does not exist",
                            "check the include path") from exc
    except (TypeError, ValueError, AttributeError, ArithmeticError, LookupError, RecursionError) as exc:
        raise TemplateError(f"template {name} failed: {type(exc).__name__}: {exc}", "fix the template") from exc


def check_template(template: str | Path) -> None:
    """Fail now on a user template that is missing or does not parse, before a run writes anything.

    Raises:
        TemplateError: naming the file and the line of the syntax error.
    """
    from jinja2 import TemplateSyntaxError

    path = Path(template)
    if not path.is_file():
        raise TemplateError(f"template {path} does not exist", "check card.template or the --template path")
    env = template_environment([path.resolve().parent, templates_dir()])
    try:
        env.get_template(path.name)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {exc.filename or path} has a syntax error on line {exc.lineno}: {exc.message}",
                            "fix the template") from exc


def render_card(record: RunRecord, template: str | Path | None = None) -> str:
    """The whole card: YAML front matter made by huggingface_hub, then the rendered body."""
    return front_matter(record) + "\n" + render_body(record, template).lstrip("\n")


def write_card(record: RunRecord, path: Path, template: str | Path | None = None) -> str:
    """Render and write the card atomically; an existing hand-edited card keeps its text outside the markers."""
    from cardgen.card.markers import merge_generated
    from cardgen.files import atomic_write_text

    text = render_card(record, template)
    if path.is_file():
        text = merge_generated(path.read_text(encoding="utf-8"), text)
    atomic_write_text(path, text)
    return text


def render_markdown(comparison: Comparison, base_name: str | None = None) -> str:
    """The card's "Comparison with the base model" section on its own (``cardgen compare --markdown``)."""
    from cardgen.card.render import template_environment, templates_dir

    env = template_environment([templates_dir()])
    if comparison.task != "text-classification":
        from cardgen.card.comparison import markdown_context

        return str(env.get_template("partials/score_comparison.md.j2").render(
            comparison=markdown_context(comparison)))
    text = env.get_template("partials/comparison.md.j2").render(comparison=comparison_context(comparison, base_name))
    return str(text)
