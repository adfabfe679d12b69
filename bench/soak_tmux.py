"""Random keys for real: the workbench in tmux, the bundled model, a few minutes (issue 17).

The Pilot soak (tests/test_tui_soak.py) runs over the fake engine in-process;
this one runs the installed ``logitlab`` in a real terminal (tmux) against the
bundled SmolLM2, so keys arrive through a pty in bursts, replies are decoded by
torch, and the process's exit status is what a shell sees. The same seeded key
pool (tests/soak_keys.py), minus Ctrl+Q. If the app quits anyway (the palette's
Quit, say) the shell loop starts it again and the exit status is recorded.

Findings: any exit status other than 0, any crash log in the data dir, any
error dialog seen on screen (the screen is captured every --check-every keys).
Everything runs in a temporary directory: the user's sessions and config are
never touched. Needs tmux.

    .venv/bin/python bench/soak_tmux.py [--seconds 150] [--seed 1] [--rate 25]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.soak_keys import KeyPicker  # noqa: E402

TMUX_NAMES = {
    "enter": "Enter",
    "escape": "Escape",
    "space": "Space",
    "tab": "Tab",
    "shift+tab": "BTab",
    "backspace": "BSpace",
    "delete": "DC",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "home": "Home",
    "end": "End",
    "pageup": "PPage",
    "pagedown": "NPage",
    "shift+enter": "S-Enter",
    "slash": "/",
}
EXCLUDE = ("ctrl+q",)  # quitting is not a finding; the palette's Quit still can
ERROR_DIALOG = "Something went wrong"


def tmux_key(key: str) -> tuple[list[str], bool]:
    """(send-keys arguments, literal) for a Textual key name."""
    if key in TMUX_NAMES:
        return [TMUX_NAMES[key]], False
    if key.startswith("ctrl+"):
        return [f"C-{key.removeprefix('ctrl+')}"], False
    if key.startswith("f") and key[1:].isdigit():
        return [key.upper()], False
    return [key], True  # a character


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", *args], capture_output=True, text=True, check=False)
        return done.stdout

    def send(self, key: str) -> None:
        names, literal = tmux_key(key)
        self.run("send-keys", "-t", self.name, *(["-l"] if literal else []), *names)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def alive(self) -> bool:
        done = subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True)
        return done.returncode == 0


def wait_for(tmux: Tmux, text: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in tmux.screen():
            return True
        time.sleep(0.5)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0, help="how long to press keys")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=25.0, help="keys per second")
    parser.add_argument("--check-every", type=int, default=100, help="keys between screen checks")
    parser.add_argument("--size", default="120x36", help="terminal WIDTHxHEIGHT")
    parser.add_argument("--inject", default="", help="LOGITLAB_INJECT_FAULT for the first run")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("soak_tmux: needs tmux (apt-get install -y tmux)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="logitlab-soak-"))
    data, exits = work / "data", work / "exits.log"
    width, height = args.size.split("x")
    env = {
        "LOGITLAB_DATA_DIR": str(data),
        "LOGITLAB_CONFIG_DIR": str(work / "config"),
        "HF_HUB_OFFLINE": "1",
    }
    logitlab = shlex.quote(str(ROOT / ".venv" / "bin" / "logitlab"))
    first = f"LOGITLAB_INJECT_FAULT={shlex.quote(args.inject)} " if args.inject else ""
    # the app again after every exit, each exit status recorded (Textual draws on
    # stderr: it stays the terminal's)
    loop = (
        f"cd {shlex.quote(str(work))}; {first}{logitlab}; echo $? >> exits.log; "
        f"while true; do {logitlab}; echo $? >> exits.log; done"
    )
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    tmux = Tmux(f"logitlab-soak-{os.getpid()}")
    tmux.run(
        "new-session",
        "-d",
        "-s",
        tmux.name,
        "-x",
        width,
        "-y",
        height,
        f"env {exports} sh -c {shlex.quote(loop)}",
    )
    print(f"soak_tmux: seed {args.seed}, {args.seconds:.0f} s at {args.rate:g} keys/s, in {work}")
    findings: list[str] = []
    pressed = checks = dialogs = 0
    started = time.monotonic()
    try:
        if not wait_for(tmux, "tok/s", 180):
            print(tmux.screen())
            print("soak_tmux: the workbench did not come up in 180 s", file=sys.stderr)
            return 1
        loaded = time.monotonic() - started
        print(f"soak_tmux: workbench up after {loaded:.1f} s; pressing keys")
        pick = KeyPicker(args.seed, exclude=EXCLUDE)
        recent: list[str] = []
        begin = time.monotonic()
        while time.monotonic() - begin < args.seconds:
            key = pick()
            tmux.send(key)
            recent = [*recent[-29:], key]
            pressed += 1
            time.sleep(1 / args.rate)
            if pressed % args.check_every == 0:
                checks += 1
                screen = tmux.screen()
                if ERROR_DIALOG in screen:
                    dialogs += 1
                    findings.append(
                        f"error dialog after {pressed} keys (last: {recent}):\n{screen}"
                    )
                    tmux.send("escape")
        elapsed = time.monotonic() - begin
        for _ in range(4):  # out of any dialog, then quit
            tmux.send("escape")
            time.sleep(0.3)
        runs_before_quit = len(exits.read_text().split()) if exits.exists() else 0
        tmux.send("ctrl+q")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if exits.exists() and len(exits.read_text().split()) > runs_before_quit:
                break
            time.sleep(0.5)
        else:
            findings.append(f"Ctrl+Q did not end the app within 30 s:\n{tmux.screen()}")
    finally:
        tmux.run("kill-session", "-t", tmux.name)
    statuses = [int(s) for s in exits.read_text().split()] if exits.exists() else []
    logs = sorted(data.glob("crash-*.log"))
    findings += [f"exit status {s}" for s in statuses if s != 0]
    findings += [f"crash log {log}:\n{log.read_text()[-1500:]}" for log in logs]
    sessions = 0
    if (data / "sessions.db").exists():
        import sqlite3

        with sqlite3.connect(data / "sessions.db") as conn:
            sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    print(
        f"soak_tmux: {pressed} keys in {elapsed:.0f} s ({pressed / max(elapsed, 1e-9):.1f}/s), "
        f"{checks} screen checks, {dialogs} error dialogs, {len(statuses)} exits "
        f"(statuses {statuses}), {len(logs)} crash logs, {sessions} sessions saved"
    )
    for finding in findings:
        print(f"--- finding\n{finding}")
    if not findings:
        print("soak_tmux: nothing found")
        shutil.rmtree(work, ignore_errors=True)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
