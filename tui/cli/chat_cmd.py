"""`logitlab chat` (and bare `logitlab`): open the workbench, saving the chat as a session."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tui.cli.options import (
    add_engine_options,
    add_model_options,
    merge_model_defaults,
    model_spec_from,
    remote_engine_from,
    remote_spec,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("chat", help="open the workbench TUI (the default)")
    add_model_options(parser)
    add_engine_options(parser)
    parser.add_argument("--session", metavar="ID", help="resume a saved session")
    parser.add_argument("--theme", metavar="NAME", help="colour theme (see themes/README.md)")
    # a native crash must not leave the terminal broken: run it supervised
    parser.set_defaults(run=run, takes_terminal=True)


def run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.errors import SessionError
    from tui import theming
    from tui.app import make_app
    from tui.crash import crash_line
    from tui.fatal_log import crash_notice, unreported_crashes
    from tui.screens.bindings import checked_keymap
    from tui.settings import UISettings
    from tui.store_recorder import StoreRecorder

    config = load_config()
    themes, problems = theming.load_themes()
    theme, warnings = theming.initial_theme_name(args.theme, config.theme, themes)
    warnings = [*(crash_notice(path, what) for path, what in unreported_crashes()), *warnings]
    remote = remote_engine_from(args)  # --engine URL: the workbench over a server
    spec = (
        remote_spec(args)
        if remote is not None
        else model_spec_from(merge_model_defaults(args, config.model))
    )
    settings = UISettings(
        overrides=config.sampling.as_overrides(), allow_special=config.allow_special
    )
    keymap = checked_keymap(config.keymap)  # an unknown binding id: one line, before the TUI
    recorder = StoreRecorder.open_default()
    try:
        session = None
        if args.session:  # an unknown id fails here, one line, before the TUI starts
            if recorder.store is None:
                raise SessionError(f"cannot resume {args.session}: {recorder.problem}")
            session = recorder.store.get(args.session)
        app = make_app(
            backend=remote,
            spec=spec,
            settings=settings,
            recorder=recorder,
            session=session,
            theme=theme,
            themes=(themes, problems),
            notices=warnings,
            keymap=keymap,
        )
        app.run()
        if app.crash is not None:  # one line; the traceback is in the crash log
            print(crash_line(app.crash, recorder.current_session_id()), file=sys.stderr)
    finally:
        recorder.close()  # pending writes land before the process ends
    # a crash is never a success: the app's return code is the process's (1 after a crash)
    return app.return_code or 0
