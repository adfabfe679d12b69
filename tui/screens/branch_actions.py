"""The workbench's reply-tree actions: branch, fan out, the Branches view, and
moving the token stream between replies.

A collaborator of the workbench screen (like SessionActions and LensActions):
the screen binds keys and routes messages here; the state is the `Workbench`'s.
The tree lives on the reply's `Turn` (its current path plus the other branches);
decoding goes through the workbench's run, whose live reply is moved between
paths by rewinding its KV cache (`engine.decode.reposition`), never re-prefilled.
"""

from __future__ import annotations

import random
from typing import Any

from textual.screen import Screen

from engine.decode import fan_out_summary, step_unavailable
from engine.records import Step
from engine.sessions import Turn, set_tree, tree_of
from tui.messages import BranchDecoded, FanOutFinished, FanOutProgressed
from tui.screens.views import STREAM_TITLE, show_reply
from tui.widgets.chat_pane import ChatPane
from tui.widgets.status_bar import StatusBar
from tui.widgets.token_stream import TokenStream
from tui.workbench import Workbench


class BranchActions:
    def __init__(self, workbench: Workbench, screen: Screen[Any]) -> None:
        self.workbench, self.screen = workbench, screen
        self._fan_prefix: list[Step] = []
        self._fan_reply: Turn | None = None
        self._fan_kept: list[int] = []  # the reply's ids from the fan-out point
        self._fan_made: list[list[Step]] = []  # each continuation's new steps

    @property
    def shown(self) -> int | None:
        """The turn the token stream shows; None: the last reply."""
        return self.workbench.shown

    # --- which reply the token stream shows --------------------------------------------

    def replies(self) -> list[int]:
        turns = self.workbench.conversation.turns
        return [i for i, t in enumerate(turns) if t.role == "assistant"]

    def shown_turn(self) -> Turn | None:
        turns = self.workbench.conversation.turns
        if self.shown is not None and 0 <= self.shown < len(turns):
            return turns[self.shown]
        return self.workbench.conversation.last_reply

    def move(self, delta: int) -> None:
        screen = self.screen
        if self.workbench.replying:
            screen.notify("Still generating — Esc stops it first.", severity="warning")
            return
        replies = self.replies()
        if not replies:
            screen.notify("There is no reply to show yet.", severity="warning")
            return
        at = replies.index(self.shown) if self.shown in replies else len(replies) - 1
        at = max(0, min(len(replies) - 1, at + delta))
        self.show(replies[at])

    def show(self, turn_index: int) -> None:
        replies = self.replies()
        self.workbench.shown = None if turn_index == replies[-1] else turn_index
        turn = self.workbench.conversation.turns[turn_index]
        n = replies.index(turn_index) + 1
        show_reply(self.screen, turn.steps, f"reply {n}/{len(replies)} · " + STREAM_TITLE)

    # --- branching -----------------------------------------------------------------------

    def _usable(self, what: str) -> Turn | None:
        """The last reply if `what` can start on it now; None (the user told why)."""
        screen, wb = self.screen, self.workbench
        reply = wb.conversation.last_reply
        if wb.replying or reply is None or reply.finish_reason is None:
            screen.notify(
                f"{what} works on the last reply once it has finished.",
                severity="warning",
                markup=False,
            )
            return None
        if self.shown is not None:
            screen.notify(
                f"{what} works on the last reply; press n to show it.",
                severity="warning",
                markup=False,
            )
            return None
        if wb.facts is None:
            screen.notify("The model is still loading.", severity="warning")
            return None
        if (why := step_unavailable(wb.backend)) is not None:
            screen.notify(why, severity="warning", markup=False)
            return None
        return reply

    def _cursor(self, reply: Turn) -> int | None:
        at = self.screen.query_one(TokenStream).cursor
        if at is None or not 0 <= at < len(reply.steps):
            self.screen.notify("Select a token of the last reply first (←/→).", severity="warning")
            return None
        return at

    def branch(self) -> None:
        if (reply := self._usable("Branching")) is None or (at := self._cursor(reply)) is None:
            return
        self.screen.call_after_refresh(self._branch, reply, at)

    async def _branch(self, reply: Turn, at: int) -> None:
        screen, wb = self.screen, self.workbench
        target = [s.token_id for s in reply.steps[:at]]
        run = wb.gen_run
        fresh = run is None or run.reply is None
        if run is None or run.reply is None:
            # no live decoder (a reopened session, a reply from before a reload):
            # one prefill of prompt + the kept prefix; later moves rewind it
            run = wb.continued_run(target)
            if run is None:
                return
        index = wb.conversation.branch(at)
        screen.query_one(TokenStream).truncate(at)
        note = (
            f"⎇ branch {index + 1} of {len(reply.alternatives) + 1}, from step {at} · F5 branches"
        )
        await screen.query_one(ChatPane).restart_reply(reply.content, note)
        screen.query_one(StatusBar).state = "branching"
        if fresh:
            wb.start(run)
        else:
            wb.resume(run, target)
        screen.refresh_bindings()

    # --- fan out -------------------------------------------------------------------------

    def fan_out(self) -> None:
        from tui.screens.fan_out import FanOutScreen

        if (reply := self._usable("Fan out")) is None or (at := self._cursor(reply)) is None:
            return
        resolved = self.workbench.resolved()
        if resolved is None:
            return
        base = resolved[0].seed if resolved[0].seed is not None else random.randrange(2**31)

        def chosen(k: int | None) -> None:
            if k is not None:
                self._start_fan_out(reply, at, [base + n for n in range(k)])

        self.screen.app.push_screen(FanOutScreen(at, base), chosen)

    def _start_fan_out(self, reply: Turn, at: int, seeds: list[int]) -> None:
        screen = self.screen
        if self._usable("Fan out") is not reply:
            return
        prefix = reply.steps[:at]
        target = [s.token_id for s in prefix]
        run = self.workbench.gen_run
        if run is None or run.reply is None:
            run = self.workbench.continued_run(target)
            if run is None:
                return
        self._fan_prefix, self._fan_reply = list(prefix), reply
        self._fan_kept = [s.token_id for s in reply.steps[at:]]  # the reply from there
        self._fan_made = []
        screen.query_one(StatusBar).state = f"fan out 1/{len(seeds)} · seed {seeds[0]}"
        self.workbench.fan_out(run, target, seeds)
        screen.refresh_bindings()

    def progressed(self, event: FanOutProgressed) -> None:
        self.screen.query_one(StatusBar).state = (
            f"fan out {event.index + 1}/{event.total} · seed {event.seed} · "
            f"{event.tokens} tokens · Esc stops"
        )

    def decoded(self, event: BranchDecoded) -> None:
        reply = self._fan_reply
        if reply is None:
            return
        tree = tree_of(reply)
        self._fan_made.append(list(event.steps))
        tree, _ = tree.add((*self._fan_prefix, *event.steps), event.finish_reason, seed=event.seed)
        set_tree(reply, tree)

    def finished(self, event: FanOutFinished) -> None:
        screen = self.screen
        reply, self._fan_reply = self._fan_reply, None
        if reply is not None and event.made and self.workbench.params is not None:
            self.workbench.record(reply)
        stopped = " (stopped)" if event.cancelled else ""
        screen.query_one(StatusBar).state = f"fanned out {event.made}{stopped}"
        prefix = [s.token_id for s in self._fan_prefix]
        spread = fan_out_summary(
            [*prefix, *self._fan_kept],
            len(prefix),
            [[*prefix, *(s.token_id for s in made)] for made in self._fan_made],
            self.workbench.backend.token_display,
        )
        screen.notify(
            f"{event.made} continuation(s){stopped}: {spread}; F5 shows them.", markup=False
        )
        screen.refresh_bindings()

    # --- the Branches view ---------------------------------------------------------------

    def open_view(self) -> None:
        from tui.screens.branches import BranchesScreen

        screen, wb = self.screen, self.workbench
        turn = self.shown_turn()
        if turn is None or (not turn.steps and not turn.alternatives):
            screen.notify("There is no reply to show branches of yet.", severity="warning")
            return
        last = turn is wb.conversation.last_reply
        editable = last and not wb.replying
        replies = self.replies()
        n = replies.index(wb.conversation.turns.index(turn)) + 1
        title = f"branches of reply {n}/{len(replies)}" + ("" if editable else " (read-only)")

        async def closed(tree: object) -> None:
            if tree is not None and editable:
                await self._apply(turn, tree)

        screen.app.push_screen(
            BranchesScreen(tree_of(turn), editable=editable, title=title), closed
        )

    async def _apply(self, turn: Turn, tree: object) -> None:
        from engine.decode import ReplyTree

        screen = self.screen
        if not isinstance(tree, ReplyTree) or self.workbench.replying:
            return
        set_tree(turn, tree)
        await screen.query_one(ChatPane).replace_reply(turn.content)
        show_reply(screen, turn.steps)
        screen.query_one(StatusBar).state = f"branch {tree.current + 1} of {len(tree)}"
        self.workbench.count_context()
        self.workbench.record(turn)
