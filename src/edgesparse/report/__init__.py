"""The report: measured sections gathered into one dict, rendered as Markdown and as self-contained HTML."""

from edgesparse.report.collect import collect_report, format_summary
from edgesparse.report.render import write_report

__all__ = ["collect_report", "format_summary", "write_report"]
