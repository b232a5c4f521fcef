"""`cardgen card`, `cardgen lint` and `cardgen push`: the card from run.json, checked, published."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cardgen.commands.common import handle_errors


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-t", "--template", type=click.Path(dir_okay=False, path_type=Path),
              help="A Jinja template to render (sandboxed). Default: the run's card.template, else the built-in one.")
@click.option("--builtin", is_flag=True, help="Render the built-in template even if the run used its own.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the card (default: RUN_DIR/README.md).")
@click.option("--overwrite-card", is_flag=True,
              help="Replace an existing card that cardgen did not write (one without cardgen sections).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON on stdout.")
@handle_errors
def card(run_dir: Path, template: Path | None, builtin: bool, output: Path | None, overwrite_card: bool,
         as_json: bool) -> None:
    """Re-render the model card from RUN_DIR/run.json alone (no torch, no re-training)."""
    from cardgen.card.render import write_card
    from cardgen.console import print_json, print_text
    from cardgen.errors import ConfigError, TemplateError
    from cardgen.record import load_record

    if builtin and template:
        raise ConfigError("--template and --builtin exclude each other", "pass one of them")
    record = load_record(run_dir)
    if template is None and not builtin:
        used = (record.config.get("card") or {}).get("template")
        if used:
            template = Path(used)
            if not template.is_file():
                raise TemplateError(f"the run was rendered with template {template}, which no longer exists",
                                    "pass --template PATH, or --builtin for the built-in card")
    target = output or (run_dir / "README.md")
    write_card(record, target, template=template, overwrite_card=overwrite_card)
    if as_json:
        print_json({"card": str(target), "template": str(template) if template else "built-in",
                    "run_record": str(run_dir / "run.json")})
    else:
        print_text(f"Wrote {target}")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--repo-id", required=True, metavar="NS/NAME", help="The model repo to publish to (created if missing).")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch.")
@click.option("--private", is_flag=True, help="Create the repo private.")
@click.option("--revision", metavar="BRANCH", help="Branch to commit to (default main), or the PR's base branch.")
@click.option("--with-model", is_flag=True, help="Also upload the weights, config and tokenizer files.")
@click.option("--commit-message", metavar="TEXT", help="Summary of the commit (or title of the pull request).")
@click.option("--dry-run", is_flag=True, help="Show what would be uploaded and the card diff; write nothing.")
@click.option("--token", metavar="TOKEN", help="Hub token (default: HF_TOKEN or the huggingface_hub login).")
@click.option("--overwrite", is_flag=True, help="Replace the card on the Hub instead of merging into it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (files, statuses, URLs) as JSON on stdout.")
@handle_errors
def push(run_dir: Path, repo_id: str, create_pr: bool, private: bool, revision: str | None, with_model: bool,
         commit_message: str | None, dry_run: bool, token: str | None, overwrite: bool, as_json: bool) -> None:
    """Publish RUN_DIR's card, run.json and plots (and with --with-model the model) to the Hub in one commit.

    On an existing repo, cardgen's generated sections of the card are replaced and text written by people is
    kept (unless --overwrite). With --dry-run and no network, it lists what it would push and says it could
    not compare it with the repo.
    """
    import dataclasses

    from cardgen.console import RichProgress, print_json, print_table, print_text
    from cardgen.hub.push import push as push_to_hub

    result = push_to_hub(run_dir, repo_id, token=token, create_pr=create_pr, private=private, revision=revision,
                         with_model=with_model, commit_message=commit_message, dry_run=dry_run,
                         overwrite=overwrite, progress=RichProgress(quiet=as_json))
    if as_json:
        print_json({**dataclasses.asdict(result), "changed": [f.path for f in result.changed]})
        return
    rows = [(f.path, f.status, f"{f.size:,}") for f in result.files]
    print_text(f"{result.repo_id} @ {result.revision}")
    print_table("Files", ["File", "Status", "bytes"], rows)
    if result.dry_run and not result.compared:
        print_text(f"Dry run: {result.unreachable}, so the files and the card above were not compared with "
                   f"{result.repo_id} and the card was not validated by the Hub (only checked here). "
                   f"Nothing was written.")
    elif result.dry_run:
        print_text(result.diff or "The card on the Hub is the same as the one to push.")
        print_text(f"Dry run: nothing was written to {result.repo_url}")
    elif result.no_change:
        print_text(f"Nothing to push: {result.repo_url} already has these files.")
    elif result.pr_url:
        print_text(f"Opened pull request {result.pr_url}")
    else:
        print_text(f"Pushed {len(result.changed)} file(s) to {result.repo_url} ({result.commit_url})")


@click.command()
@click.argument("card_path", metavar="CARD.md", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Treat warnings (placeholder text, no results) as problems.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON on stdout (for CI).")
@click.option("--online", is_flag=True, help="Also ask the Hub to validate the metadata (POST /api/validate-yaml "
              "at HF_ENDPOINT); offline checks only without it.")
@click.option("--token", metavar="TOKEN", help="With --online: the Hub token (default: HF_TOKEN or the login; "
              "validation works without one).")
@handle_errors
def lint(card_path: Path, strict: bool, as_json: bool, online: bool, token: str | None) -> None:
    """Check a model card offline: YAML front matter, no nulls, a valid model-index, a license and a base_model,
    no placeholder text left, and every referenced image present. With --online, the Hub's own validation too.

    Exit 0 when the card passes (warnings are listed), 1 with the list of problems, 2 when CARD.md is missing
    (or, with --online, when the Hub cannot be reached).
    """
    from cardgen.card.lint import lint_card
    from cardgen.console import print_json, print_text
    from cardgen.errors import ConfigError

    if token and not online:
        raise ConfigError("--token needs --online", "add --online, or drop --token")
    result = lint_card(card_path, strict=strict)
    if online:
        from cardgen.hub.validate import lint_online

        result = lint_online(result, token=token)
    if as_json:
        print_json(result.to_dict())
    else:
        for finding in result.problems + result.warnings:
            where = f"{result.path}:{finding.line}" if finding.line else result.path
            label = "problem" if finding in result.problems else "warning"
            print_text(f"{where}: {label} [{finding.code}] {finding.message}")
        n_p, n_w = len(result.problems), len(result.warnings)
        print_text(f"{result.path}: {'OK' if result.ok else 'FAILED'} ({n_p} problem{'s' * (n_p != 1)}, "
                   f"{n_w} warning{'s' * (n_w != 1)})")
    if not result.ok:
        sys.exit(1)
