"""One training per device: queue the new run, or stop the current one for it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class QueueOrStopScreen(ModalScreen[str | None]):
    """Answers "queue", "stop" (stop the current run, then start this) or None."""

    BINDINGS = [
        Binding("q", "answer('queue')", "Queue", id="queue.queue"),
        Binding("s", "answer('stop')", "Stop current", id="queue.stop"),
        Binding("escape,c", "answer(None)", "Cancel", id="queue.cancel"),
    ]

    def __init__(self, device: str, current: str, new: str) -> None:
        super().__init__()
        self.device, self.current, self.new = device, current, new

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"{self.device} is busy", classes="dialog-title", markup=False)
            yield Static(f"Running: {self.current}\nNew: {self.new}\n\nQueue the new run to "
                         "start when this one ends, or stop the running one (it is stored as "
                         "cancelled with its last checkpoint) and start the new one?",
                         markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Queue (q)", variant="primary", id="queue", compact=True)
                yield Button("Stop current (s)", variant="warning", id="stop", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#queue", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)
