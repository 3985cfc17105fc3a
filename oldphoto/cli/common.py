"""Console, error reporting and the help layout shared by the CLI commands."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

console = Console(stderr=True)


def say(style: str, label: str, message: str) -> None:
    """Print ``label: message`` with the label styled; the message is never read as markup."""
    console.print(f"[{style}]{label}:[/{style}] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def typer_app(**settings: Any) -> typer.Typer:
    """A Typer app whose help is plain text, as written.

    Rich help reads ``[faces]`` in a help string as markup and drops it, shows ``<bool>``
    after every flag as if it took a value, and squeezes the help of a command with many
    options into a column a few words wide at 80 columns; plain help has none of that.
    """
    return typer.Typer(rich_markup_mode=None, cls=Group, **settings)


#: Stands in for "-" while help text is wrapped (and is turned back after), so the wrapper never
#: breaks ``--save-mask`` or ``fine-tune`` at a hyphen: a non-breaking hyphen is no break point.
_KEEP = "\u2011"


class _Formatter(TyperCommand.context_class.formatter_class):  # type: ignore[misc,name-defined]
    """Click's help formatter, wrapping only at spaces."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog.replace("-", _KEEP), args.replace("-", _KEEP), prefix)

    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", _KEEP))

    def write_dl(self, rows: Any, *args: Any, **kwargs: Any) -> None:
        super().write_dl([(a.replace("-", _KEEP), b.replace("-", _KEEP)) for a, b in rows], *args, **kwargs)

    def getvalue(self) -> str:
        return super().getvalue().replace(_KEEP, "-")


class _Context(TyperCommand.context_class):  # type: ignore[misc,name-defined]
    formatter_class = _Formatter


class Group(TyperGroup):
    """A command group whose help wraps only at spaces."""

    context_class = _Context


class Command(TyperCommand):
    """A command that names its arguments as written (``IN OUT``, ``[MODEL]...``) in the usage line and the help.

    Typer writes them as ``{src} {dest}`` in the usage line and adds a Python type
    (``<list[str]>``) after the name in the list of arguments.
    """

    context_class = _Context

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [self.options_metavar] * bool(self.options_metavar) + [_argument_name(p) for p in _arguments(self, ctx)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments = [(_argument_name(p), (p.get_help_record(ctx) or ("", ""))[1]) for p in _arguments(self, ctx)]
        options = [r for p in self.get_params(ctx) if p.param_type_name == "option" and (r := p.get_help_record(ctx))]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _arguments(command: TyperCommand, ctx: Any) -> list[Any]:
    return [p for p in command.get_params(ctx) if p.param_type_name == "argument" and not getattr(p, "hidden", False)]


def _argument_name(param: Any) -> str:
    """``IN``, ``[MODEL]`` (optional) or ``[MODEL]...`` (any number): the metavar, else the upper-case name."""
    name = param.metavar or (param.name or "").upper()
    name = name if param.required else f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name
