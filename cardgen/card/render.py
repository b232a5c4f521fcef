"""Context -> Jinja body + front matter -> card text, written atomically.

Templates render in Jinja's sandbox with StrictUndefined, so a missing value fails loudly instead of printing
blank; arithmetic that would build huge values is refused.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
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
# Bounds on a render as a whole: every loop iteration (nested loops multiply), the card's size and the time.
MAX_LOOP_ITERATIONS = 1_000_000
MAX_CARD_CHARS = 5_000_000
MAX_RENDER_SECONDS = 20.0
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_HUGE_FORMAT_WIDTH = re.compile(r"[%:{][^%:{}]*?\d{7,}")  # "%1000000000d", "{:>1000000000}"


class RenderLimitExceeded(Exception):
    """A render ran past one of the bounds above."""


class RenderBudget:
    """What one render may still spend: loop iterations and seconds (RenderLimitExceeded when one is gone)."""

    def __init__(self) -> None:
        self.iterations = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def tick(self, steps: int = 1) -> None:
        self.iterations += steps
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise RenderLimitExceeded(f"more than {MAX_LOOP_ITERATIONS:,} loop iterations")
        if self.iterations % 1024 == 0 or steps > 1:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")

    def counted(self, iterable: Any) -> Iterator[Any]:
        for item in iterable:
            self.tick()
            yield item


def _check_str_call(text: str, method: str, args: tuple[Any, ...]) -> None:
    """Refuse str methods whose result would be huge: padding to a giant width, replacing into a giant text."""
    from jinja2.exceptions import SecurityError

    if method in _PADDING_METHODS and args and isinstance(args[0], int) and args[0] > MAX_TEMPLATE_VALUE:
        raise SecurityError(f"{method}() to a width of {args[0]} is not allowed")
    if method == "expandtabs" and args and isinstance(args[0], int) and args[0] * text.count("\t") > MAX_TEMPLATE_VALUE:
        raise SecurityError("expandtabs() that wide is not allowed")
    if method == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = text.count(args[0]) if args[0] else len(text) + 1
        if len(text) + hits * len(args[1]) > MAX_TEMPLATE_VALUE:
            raise SecurityError("replace() would build a text that large")
    if method in ("format", "format_map") and _HUGE_FORMAT_WIDTH.search(text):
        raise SecurityError("a format width that large is not allowed")


def _checked_filter(func: Callable[..., Any], method: str) -> Callable[..., Any]:
    """A Jinja filter that refuses, before it runs, what :func:`_check_str_call` refuses of the str method."""
    from jinja2.nodes import EvalContext

    @functools.wraps(func)  # keeps jinja's pass_eval_context marker
    def checked(*args: Any, **kwargs: Any) -> Any:
        rest = args[1:] if args and isinstance(args[0], EvalContext) else args
        if rest and isinstance(rest[0], str):
            width = kwargs.get("width")
            _check_str_call(rest[0], method, (width, *rest[1:]) if isinstance(width, int) else rest[1:])
        return func(*args, **kwargs)

    return checked


def template_environment(search_dirs: list[Path]) -> Any:
    from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, nodes
    from jinja2.exceptions import SecurityError
    from jinja2.runtime import LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class CardSandbox(ImmutableSandboxedEnvironment):  # type: ignore[misc]
        # Jinja's sandbox blocks attribute tricks, not arithmetic: `'x' * 10**9` or `10 ** 10 ** 10` would still
        # exhaust memory or CPU. Intercepted operators are also never constant-folded at compile time.
        intercepted_binops = frozenset({"*", "**", "%"})
        budget = RenderBudget()  # replaced at the start of each render

        def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
            # Every for loop iterates through the render's budget: two nested range(100000) loops stop at the
            # limit instead of running 10**10 times (with or without output).
            tree = super()._parse(source, name, filename)
            for loop in tree.find_all(nodes.For):
                loop.iter = nodes.Call(nodes.EnvironmentAttribute("count_loop"), [loop.iter], [], None, None,
                                       lineno=loop.lineno)
            return tree

        def count_loop(self, iterable: Any) -> Iterator[Any]:
            return self.budget.counted(iterable)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            __self.budget.check_time()
            if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
                args = (__self.budget.counted(args[0]), *args[1:])
            target = getattr(__obj, "__self__", None)
            if isinstance(target, str):
                _check_str_call(target, getattr(__obj, "__name__", ""), args)
            return super().call(__context, __obj, *args, **kwargs)

        def wrap_str_format(self, value: Any) -> Any:  # "...".format(...) in a template
            if isinstance(getattr(value, "__self__", None), str):
                _check_str_call(value.__self__, getattr(value, "__name__", ""), ())
            return super().wrap_str_format(value)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "%" and isinstance(left, str) and _HUGE_FORMAT_WIDTH.search(left):
                raise SecurityError("a format width that large is not allowed")
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
    for filter_name, method in (("replace", "replace"), ("format", "format"), ("center", "center"),
                                ("indent", "center")):
        env.filters[filter_name] = _checked_filter(env.filters[filter_name], method)
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
        compiled = env.get_template(name)
        env.budget = RenderBudget()
        chunks: list[str] = []
        size = 0
        for chunk in compiled.generate(**context):  # streamed, so a huge card stops at the limit, not in memory
            size += len(chunk)
            if size > MAX_CARD_CHARS:
                raise RenderLimitExceeded(f"the card passed {MAX_CARD_CHARS:,} characters")
            env.budget.check_time()
            chunks.append(chunk)
        return "".join(chunks)
    except RenderLimitExceeded as exc:
        raise TemplateError(f"template {name} exceeded a rendering limit: {exc}",
                            f"templates may run at most {MAX_LOOP_ITERATIONS:,} loop iterations, write at most "
                            f"{MAX_CARD_CHARS:,} characters and take at most {MAX_RENDER_SECONDS:g} s") from exc
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
    except (TypeError, ValueError, AttributeError, ArithmeticError, LookupError, RecursionError, MemoryError) as exc:
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


def is_cardgen_card(text: str) -> bool:
    """Whether a card was written by cardgen: it has cardgen sections, or (a user template's card) the "cardgen"
    tag cardgen puts in every card's front matter."""
    from cardgen.card.markers import has_markers, split_front_matter
    from cardgen.errors import CardgenError

    try:
        metadata, body = split_front_matter(text)
    except CardgenError:
        return has_markers(text)
    tags = metadata.get("tags")
    return has_markers(body) or isinstance(tags, list) and "cardgen" in tags


def check_card_target(path: Path, overwrite_card: bool) -> None:
    """Refuse to replace a card cardgen did not write (a hand-written README.md) unless ``overwrite_card``.

    The one check of ``cardgen card`` (also with ``-o FILE``), ``cardgen run`` (called before training, and
    again when the card is written) and anything else that writes a card through :func:`write_card`.

    Raises:
        OutputError: ``path`` is a file that holds no cardgen sections.
    """
    from cardgen.errors import OutputError

    if overwrite_card or not path.is_file():
        return
    try:
        text: str | None = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    if text is not None and is_cardgen_card(text):
        return
    raise OutputError(f"{path} exists and has no cardgen sections (written by hand or by another tool); writing "
                      "the card would replace it",
                      "pass --overwrite-card to replace it, or write the card somewhere else")


def write_card(record: RunRecord, path: Path, template: str | Path | None = None,
               overwrite_card: bool | None = None) -> str:
    """Render and write the card atomically; an existing hand-edited card keeps its text outside the markers.

    A README.md that cardgen did not write is never replaced unless ``overwrite_card`` (default: the run's
    ``output.overwrite_card``); see :func:`check_card_target`.
    """
    from cardgen.card.markers import merge_generated
    from cardgen.files import atomic_write_text

    if overwrite_card is None:
        overwrite_card = bool((record.config.get("output") or {}).get("overwrite_card", False))
    check_card_target(path, overwrite_card)
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

        text = str(env.get_template("partials/score_comparison.md.j2").render(comparison=markdown_context(comparison)))
        if comparison.generation is not None:  # seq2seq, instruction-tuned causal LM: the examples that moved most
            from cardgen.card.generation import examples_context

            text += str(env.get_template("partials/generation_examples.md.j2").render(
                examples=examples_context(comparison.generation, comparison.num_examples)))
        return text
    text = env.get_template("partials/comparison.md.j2").render(comparison=comparison_context(comparison, base_name))
    return str(text)
