"""The report: measured sections gathered into one dict, rendered as Markdown and as self-contained HTML."""

from edgesparse._lazy import lazy_exports

_HOMES = {
    "collect_report": "edgesparse.report.collect",
    "format_summary": "edgesparse.report.collect",
    "write_report": "edgesparse.report.render",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
