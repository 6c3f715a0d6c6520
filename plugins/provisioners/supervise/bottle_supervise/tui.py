"""``bottle supervise``: the operator's terminal UI for the proposal queue.

A table of every bottle's pending proposals, refreshed every second; keys to
approve (a), modify an egress request's host (m), reject (r) and write a note
for the selected proposal (n) that goes with its answer; below, a live tail
of the selected bottle's audit log, so the operator sees what the agent did
before it asked, with the bottle's usage so far and its budget. Answers go through ``supervise_ops.answer`` in a worker
thread: approving egress talks to the Docker engine, which must not freeze
the screen.

What the agent wrote is shown escaped (``display.terminal_safe``: Textual
passes ESC through to the terminal) and never read as console markup.
"""

from datetime import datetime
from functools import partial
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, RichLog, Static

from bottle.display import terminal_safe
from bottle.errors import BottleError
from bottle.plugins import Plugins
from bottle_sidecar.audit import read_events
from bottle.sidecar.runtime import audit_path
from bottle_supervise.desk import age, answer, list_proposals

COLUMNS = ("ID", "AGE", "BOTTLE", "AGENT", "KIND", "WHAT", "REASON")
CELL = 48  # characters of WHAT and REASON in the table; the details below show them whole
TAIL = 200  # audit events shown when the tail switches to another bottle


class Prompt(ModalScreen[str | None]):
    """Asks for one line of text; dismissed with it (Enter) or None (Escape)."""

    DEFAULT_CSS = """
    Prompt { align: center middle; }
    Prompt > Vertical { width: 80; height: auto; border: thick $accent; padding: 1 2; background: $surface; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = ""):
        super().__init__()
        self.question, self.value = question, value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)
            yield Input(value=self.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class SuperviseApp(App):
    TITLE = "bottle supervise"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, state_root: Path, plugins: Plugins, interval: float = 1.0):
        super().__init__()
        self.state_root, self.plugins, self.interval = Path(state_root), plugins, interval

    def get_default_screen(self) -> Screen:
        return ProposalsScreen(self.state_root, self.plugins, self.interval)


class ProposalsScreen(Screen):
    """Everything lives on the screen, not the app: its timer and the table's
    messages end with it, so none reaches widgets already torn down at exit."""

    DEFAULT_CSS = """
    #proposals { height: 1fr; }
    #details { height: auto; max-height: 6; padding: 0 1; background: $boost; }
    #audit { height: 1fr; border-top: solid $accent; }
    """
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("m", "modify", "Modify host"),
        Binding("r", "reject", "Reject"),
        Binding("n", "note", "Note"),
    ]

    def __init__(self, state_root: Path, plugins: Plugins, interval: float):
        super().__init__()
        self.state_root = state_root
        self.plugins = plugins  # they carry out what an approval grants
        self.interval = interval
        self.proposals: dict[str, dict] = {}  # by row key (the id as text)
        self.notes: dict[int, str] = {}  # written with n, sent with the answer
        self.tailed: str | None = None  # the bottle whose audit log is shown
        self.last_event = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="proposals", cursor_type="row", zebra_stripes=True)
        yield Static(id="details", markup=False)
        yield RichLog(id="audit", max_lines=2000, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.refresh_proposals()
        self.set_interval(self.interval, self.refresh_proposals)

    def selected(self) -> dict | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.proposals.get(key)

    def refresh_proposals(self) -> None:
        """Rebuild the table from the queue, keeping the selected proposal (or its place) selected.

        Every text is shown as written, escaped: an agent's reason holding
        console markup must neither break the screen nor dress itself up."""
        table = self.query_one(DataTable)
        current, row = self.selected(), table.cursor_row
        self.proposals = {str(p["id"]): p for p in list_proposals(self.state_root)}
        table.clear()
        for key, p in self.proposals.items():
            cells = (key, age(p["created"]), *map(terminal_safe, (p["bottle"], p["agent"], p["kind"])),
                     cut(p["what"]), cut(p["reason"]))
            table.add_row(*map(Text, cells), key=key)  # Text: what the agent wrote is not markup
        if current is not None and str(current["id"]) in self.proposals:
            row = table.get_row_index(str(current["id"]))
        table.move_cursor(row=min(row, table.row_count - 1))  # an answered row's place goes to the next one
        self.show_details()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_details()

    def show_details(self) -> None:
        proposal = self.selected()
        details = self.query_one("#details", Static)
        if proposal is None:
            details.update("No pending proposals.")
        else:
            note = self.notes.get(proposal["id"])
            lines = [f"#{proposal['id']} {proposal['kind']} from {proposal['bottle']} ({proposal['agent']}): "
                     f"{proposal['what']}", f"reason: {proposal['reason'] or '-'}",
                     spending(self.state_root / proposal["bottle"])]
            details.update("\n".join(map(terminal_safe, lines + ([f"note to send: {note}"] if note else []))))
            if proposal["bottle"] != self.tailed:
                self.tailed, self.last_event = proposal["bottle"], 0
                self.query_one(RichLog).clear()
        self.tail_audit()

    def tail_audit(self) -> None:
        """Append the tailed bottle's new audit events (the last TAIL when switching to it)."""
        if self.tailed is None:
            return
        events = read_events(audit_path(self.state_root / self.tailed), since_id=self.last_event)
        if self.last_event == 0:
            events = events[-TAIL:]
        log = self.query_one(RichLog)
        for event in events:
            log.write(format_event(event))
            self.last_event = event["id"]

    def action_approve(self) -> None:
        self.send("approve")

    def action_reject(self) -> None:
        self.send("reject")

    def action_modify(self) -> None:
        proposal = self.selected()
        if proposal is None:
            return
        if proposal["kind"] != "egress":
            self.notify("Only an egress request can be approved for another host.", severity="warning")
            return
        # Escaped: a host that needed it is no valid rule, so sending it unchanged fails.
        asked = terminal_safe(proposal["what"])
        self.app.push_screen(
            Prompt(f"Allow which host instead of {asked}?", asked),
            lambda host: host and self.send("modify", host, proposal),
        )

    def action_note(self) -> None:
        proposal = self.selected()
        if proposal is None:
            return

        def keep(note: str | None) -> None:
            if note is not None:
                self.notes[proposal["id"]] = note
                self.show_details()

        self.app.push_screen(Prompt(f"Note for proposal {proposal['id']}:", self.notes.get(proposal["id"], "")), keep)

    def send(self, decision: str, host: str | None = None, proposal: dict | None = None) -> None:
        proposal = proposal or self.selected()
        if proposal is None:
            return
        note = self.notes.get(proposal["id"], "")
        self.run_worker(partial(self._answer, proposal["id"], decision, note, host), thread=True, group="answers")

    def _answer(self, proposal_id: int, decision: str, note: str, host: str | None) -> None:
        try:
            answered = answer(self.state_root, proposal_id, decision, note, host, plugins=self.plugins)
        except BottleError as err:
            self.app.call_from_thread(partial(self.notify, str(err), severity="error", timeout=15, markup=False))
        else:
            self.notes.pop(proposal_id, None)
            granted = f": {terminal_safe(answered['answer_value'])}" if answered["answer_value"] else ""
            self.app.call_from_thread(partial(self.notify, f"Proposal {proposal_id} {answered['status']}{granted}",
                                              markup=False))
        self.app.call_from_thread(self.refresh_proposals)


def spending(state_dir: Path) -> str:
    """The bottle's usage so far and its budget, in one line, as its sidecar metered it and its policy says."""
    import json

    from bottle_egress.policy_file import policy_path
    from bottle_egress.usage import usage_of

    total, _ = usage_of(state_dir)
    used = f"{total.total} tokens" + ("" if total.usd is None else f" (${total.usd:.2f})")
    try:
        budget = json.loads(policy_path(state_dir).read_text()).get("budget")
    except (OSError, ValueError):
        budget = None
    if not budget:
        return f"usage: {used}; no budget"
    limits = [f"{budget['max_tokens']} tokens" if budget.get("max_tokens") else "",
              f"${budget['max_usd']:.2f}" if budget.get("max_usd") else ""]
    return f"usage: {used} of a budget of {' and '.join(filter(None, limits))} per {budget.get('per', 'bottle')}"


def cut(text: str) -> str:
    """*text* escaped (so on one line), in at most CELL characters."""
    text = terminal_safe(text)
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def format_event(event: dict) -> str:
    when = datetime.fromtimestamp(event["ts"]).strftime("%H:%M:%S")
    port = f":{event['port']}" if event.get("port") else ""
    where = f"{event.get('method') or ''} {event.get('host') or ''}{port}{event.get('path') or ''}".strip()
    line = f"{when} {event['source']:9} {event['decision']:12} {where} {event.get('reason') or ''}".rstrip()
    return terminal_safe(line)
