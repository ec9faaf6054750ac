"""Reports: tables, figures and an HTML page from the results long table.

>>> from xeval.reports import ReportData, write_report
>>> paths = write_report(ReportData(results=df, curves=curves, manifest=manifest), "out/")

See :func:`write_report` for the files a report folder contains.
"""

from __future__ import annotations

from xeval.reports.data import GalleryItem, ReportData, with_statistics
from xeval.reports.latex import latex_tables
from xeval.reports.tables import latex_table, markdown_tables
from xeval.reports.writer import read_results_csv, write_report

__all__ = [
    "GalleryItem",
    "ReportData",
    "latex_table",
    "latex_tables",
    "markdown_tables",
    "read_results_csv",
    "with_statistics",
    "write_report",
]
