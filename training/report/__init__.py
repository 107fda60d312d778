"""After the run: report.md (report, sections, plots) and export."""
