"""The report stage: reads what the other stages left on disk (runs/, artifacts/, the results store) and writes
Markdown, a self-contained HTML page, CSV, JSON and plots. It reads those files through the stages' own readers, never
their internals."""

from .collect import ReportData, collect
from .render import write_report

__all__ = ["ReportData", "collect", "write_report"]
