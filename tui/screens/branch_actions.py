"""The workbench's reply-tree actions: branch, fan out, the Branches view, and
moving the token stream between replies.

Kept out of MainScreen (like SessionActions and LensActions): the screen binds
keys and routes messages here. The tree lives on the reply's `Turn` (its
current path plus the other branches); decoding goes through the screen's
`GenerationRun`, whose live reply is moved between paths by rewinding its KV
cache (`engine.decode.reposition`), never re-prefilled.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from engine.decode import step_unavailable
from engine.records import Step
from tui.conversation import Turn, set_tree, tree_of
from tui.driver import GenerationRun
from tui.messages import BranchDecoded, FanOutFinished, FanOutProgressed
from tui.widgets.chat_pane import ChatPane
from tui.widgets.status_bar import StatusBar
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

if TYPE_CHECKING:
    from tui.screens.main import MainScreen

STREAM_TITLE = "tokens  ←/→ · b branch · f fan out · p/n reply · F5 branches"


class BranchActions:
    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen
        self.shown: int | None = None  # the turn the token stream shows; None: the last reply
        self._fan_prefix: list[Step] = []
        self._fan_reply: Turn | None = None

    # --- which reply the token stream shows --------------------------------------------

    def replies(self) -> list[int]:
        return [i for i, t in enumerate(self.screen.conversation.turns) if t.role == "assistant"]

    def shown_turn(self) -> Turn | None:
        turns = self.screen.conversation.turns
        if self.shown is not None and 0 <= self.shown < len(turns):
            return turns[self.shown]
        return self.screen.conversation.last_reply

    def reset(self) -> None:
        """A new reply streams into the token stream: it shows the last reply again."""
        self.shown = None
        self.screen.query_one(TokenStream).border_title = STREAM_TITLE

    def move(self, delta: int) -> None:
        screen = self.screen
        if screen.replying:
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
        self.shown = None if turn_index == replies[-1] else turn_index
        turn = self.screen.conversation.turns[turn_index]
        stream = self.screen.query_one(TokenStream)
        stream.clear()
        stream.append(turn.steps)
        n = replies.index(turn_index) + 1
        stream.border_title = f"reply {n}/{len(replies)} · " + STREAM_TITLE
        self.screen.query_one(StepView).show_step(stream.selected)

    # --- branching -----------------------------------------------------------------------

    def _usable(self, what: str) -> Turn | None:
        """The last reply if `what` can start on it now; None (the user told why)."""
        screen = self.screen
        reply = screen.conversation.last_reply
        if screen.replying or reply is None or reply.finish_reason is None:
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
        if screen.facts is None:
            screen.notify("The model is still loading.", severity="warning")
            return None
        if (why := step_unavailable(screen.backend)) is not None:
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
        screen = self.screen
        target = [s.token_id for s in reply.steps[:at]]
        run = screen.gen_run
        if run is None or run.generation is None:
            # no live decoder (a reopened session, a reply from before a reload):
            # one prefill of prompt + the kept prefix; later moves rewind it
            run = self.rebuilt_run(target)
            if run is None:
                return
            fresh = True
        else:
            fresh = False
        index = screen.conversation.branch(at)
        screen.query_one(TokenStream).truncate(at)
        note = (
            f"⎇ branch {index + 1} of {len(reply.alternatives) + 1}, from step {at} · F5 branches"
        )
        await screen.query_one(ChatPane).restart_reply(reply.content, note)
        screen.query_one(StatusBar).state = "branching"
        screen.gen_run = run
        if fresh:
            screen.run_generation(run)
        else:
            screen.resume_generation(run, target)

    def rebuilt_run(self, prefix: list[int]) -> GenerationRun | None:
        """A run that continues the last reply from `prefix`, in step mode."""
        screen = self.screen
        if (resolved := screen.resolved()) is None:
            return None
        params = screen._params = resolved[0]
        messages = screen.conversation.chat_messages(
            screen.settings.system_prompt, upto=len(screen.conversation.turns) - 1
        )
        return GenerationRun(
            screen.backend,
            messages,
            params,
            allow_special=screen.settings.allow_special,
            step_mode=True,
            prefix=prefix,
        )

    # --- fan out -------------------------------------------------------------------------

    def fan_out(self) -> None:
        from tui.screens.fan_out import FanOutScreen

        if (reply := self._usable("Fan out")) is None or (at := self._cursor(reply)) is None:
            return
        resolved = self.screen.resolved()
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
        run = screen.gen_run
        if run is None or run.generation is None:
            run = self.rebuilt_run(target)
            if run is None:
                return
            screen.gen_run = run
        self._fan_prefix, self._fan_reply = list(prefix), reply
        screen.query_one(StatusBar).state = f"fan out 1/{len(seeds)} · seed {seeds[0]}"
        screen.fan_out_generation(run, target, seeds)
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
        tree, _ = tree.add((*self._fan_prefix, *event.steps), event.finish_reason, seed=event.seed)
        set_tree(reply, tree)

    def finished(self, event: FanOutFinished) -> None:
        screen = self.screen
        reply, self._fan_reply = self._fan_reply, None
        if reply is not None and event.made and screen._params is not None:
            screen.recorder.message_completed(reply, screen.settings, screen._params)
        stopped = " (stopped)" if event.cancelled else ""
        screen.query_one(StatusBar).state = f"fanned out {event.made}{stopped}"
        screen.notify(
            f"{event.made} continuation(s) added as branches{stopped}; F5 shows them.", markup=False
        )
        screen.refresh_bindings()

    # --- the Branches view ---------------------------------------------------------------

    def open_view(self) -> None:
        from tui.screens.branches import BranchesScreen

        screen = self.screen
        turn = self.shown_turn()
        if turn is None or (not turn.steps and not turn.alternatives):
            screen.notify("There is no reply to show branches of yet.", severity="warning")
            return
        last = turn is screen.conversation.last_reply
        editable = last and not screen.replying
        replies = self.replies()
        n = replies.index(screen.conversation.turns.index(turn)) + 1
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
        if not isinstance(tree, ReplyTree) or screen.replying:
            return
        set_tree(turn, tree)
        await screen.query_one(ChatPane).replace_reply(turn.content)
        stream = screen.query_one(TokenStream)
        stream.clear()
        stream.append(turn.steps)
        screen.query_one(StepView).show_step(stream.selected)
        screen.query_one(StatusBar).state = f"branch {tree.current + 1} of {len(tree)}"
        screen.update_context_count()
        if screen._params is None and (resolved := screen.resolved(tell=False)) is not None:
            screen._params = resolved[0]
        if screen._params is not None:
            screen.recorder.message_completed(turn, screen.settings, screen._params)
