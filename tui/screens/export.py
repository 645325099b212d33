"""Export a stored run (cnnprobe.report.export): format, where, and whether to overwrite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Checkbox

from cnnprobe.config import ConfigError
from cnnprobe.report.export import FORMATS
from cnnprobe.report.files import DEFAULT_DIR
from tui.screens.form_dialog import FormDialog
from tui.widgets.field import Field, choice, text_input

LABELS = {"md": "md (Markdown)", "json": "json", "csv": "csv (one file per table)"}


class ExportScreen(FormDialog):
    """Answers {"format", "path" (None: exports/), "force"} for `export_run`."""

    TITLE_TEXT = "Export run"
    OK_LABEL = "Export"

    def __init__(self, record: Any) -> None:
        super().__init__(f"{record.id[:8]} ({record.task}/{record.model} {record.resolution}, "
                         f"{record.status}): config, metrics, histories, predictions and "
                         "sweeps. The files written are shown when done.")
        self.record = record

    def fields(self) -> list[Field]:
        return [Field("format", "format", choice([(LABELS[f], f) for f in FORMATS], "md"),
                      "choice"),
                Field("path", "to", text_input("", f"{DEFAULT_DIR}/ (a folder or a file)"),
                      "opt_str", help="a folder gets <id>-<name>.<ext>; a file is used as is"),
                Field("force", "overwrite", Checkbox("replace existing files", False), "bool")]

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        path = values.get("path")
        if path is not None:
            path = Path(path).expanduser()
            if path.exists() and not path.is_dir() and not values["force"]:
                raise ConfigError("path", str(path), "an existing file: tick overwrite, or "
                                  "give another path")
        return {"format": values["format"], "path": path, "force": values["force"]}
