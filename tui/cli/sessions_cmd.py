"""`logitlab sessions`: list, show, export, import, rename and delete saved sessions.

Output goes to stdout so it can be piped; notes (where a file was written, a
recovered database) go to stderr. Errors are engine exceptions: main.py prints
them on one line and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.errors import SessionError
from engine.sessions import (
    EXPORT_FORMATS,
    SessionStore,
    SessionSummary,
    export_markdown,
    export_text,
    import_session_text,
    read_import,
    rfc3339,
    write_export,
)

DELETE_HELP = """\
Delete a session and everything in it. On a terminal it asks first; without a
terminal (scripts, pipes) it refuses unless --yes is given, so nothing is
deleted by accident."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sessions", help="list, show, export, import or delete sessions")
    sub = parser.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="sessions by last activity")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--search", default="", metavar="TEXT", help="match titles and message text")
    p.set_defaults(run=run_list)

    p = sub.add_parser("show", help="print a session as a readable transcript")
    p.add_argument("id", metavar="ID", help="session id or a unique prefix of it")
    p.add_argument(
        "--low-prob",
        type=int,
        default=0,
        metavar="N",
        help="list each reply's N least likely tokens",
    )
    p.set_defaults(run=run_show)

    p = sub.add_parser("export", help="write a session as JSON, TOML or Markdown")
    p.add_argument("id", metavar="ID", help="session id or a unique prefix of it")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="json")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--low-prob",
        type=int,
        default=0,
        metavar="N",
        help="markdown: each reply's N least likely tokens",
    )
    p.set_defaults(run=run_export)

    p = sub.add_parser("import", help="add a session from a JSON or TOML export; prints the new id")
    p.add_argument(
        "file", metavar="FILE", help="the export file (format told by content; - = stdin)"
    )
    p.set_defaults(run=run_import)

    p = sub.add_parser("rename", help="change a session's title")
    p.add_argument("id", metavar="ID")
    p.add_argument("title", metavar="TITLE")
    p.set_defaults(run=run_rename)

    p = sub.add_parser("delete", help="delete a session", description=DELETE_HELP)
    p.add_argument("id", metavar="ID")
    p.add_argument(
        "-y", "--yes", action="store_true", help="do not ask; required without a terminal"
    )
    p.set_defaults(run=run_delete)


def open_store() -> SessionStore:
    """The user's store, saying on stderr if a corrupt database was moved aside."""
    store = SessionStore.open_default()
    if store.recovery_note is not None:
        print(f"logitlab: warning: {store.recovery_note}", file=sys.stderr)
    return store


def run_list(args: argparse.Namespace) -> int:
    with open_store() as store:
        summaries = store.list(args.search)
    if args.format == "json":
        json.dump([summary_dict(s) for s in summaries], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(summaries))
    return 0


def summary_dict(s: SessionSummary) -> dict[str, Any]:
    return {
        "id": s.id,
        "title": s.title,
        "model": s.model_id,
        "messages": s.message_count,
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.updated_at),
    }


def format_table(summaries: list[SessionSummary]) -> str:
    if not summaries:
        return "no sessions yet\n"
    rows = [
        (
            s.id[:12],
            s.updated_at.strftime("%Y-%m-%d %H:%M"),
            str(s.message_count),
            s.model_id,
            s.title,
        )
        for s in summaries
    ]
    head = ("ID", "UPDATED (UTC)", "MSGS", "MODEL", "TITLE")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]]).rstrip()
        for r in [head, *rows]
    ]
    return "\n".join(lines) + "\n"


def run_show(args: argparse.Namespace) -> int:
    with open_store() as store:
        session = store.get(args.id)
    sys.stdout.write(export_markdown(session, low_prob_tokens=args.low_prob))
    return 0


def run_export(args: argparse.Namespace) -> int:
    with open_store() as store:
        session = store.get(args.id)
    text = export_text(session, args.format, low_prob_tokens=args.low_prob)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_export(Path(args.output), text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    session = import_session_text(read_import(args.file))
    with open_store() as store:
        stored = store.import_session(session)
    print(stored.id)
    return 0


def run_rename(args: argparse.Namespace) -> int:
    with open_store() as store:
        store.rename(args.id, args.title)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with open_store() as store:
        session = store.get(args.id)
        if not args.yes:
            if not sys.stdin.isatty():
                raise SessionError(
                    f"not deleting session {session.id} without confirmation: pass --yes"
                )
            label = f"{session.title!r} " if session.title else ""
            answer = input(
                f"Delete session {session.id[:12]} {label}({len(session.messages)} messages)? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                print("not deleted", file=sys.stderr)
                return 1
        store.delete(session.id)
    return 0
