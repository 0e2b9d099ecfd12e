"""The HTML report of an output folder: OUT/seesr-report.html (issue 11).

Rebuilt from everything in OUT at the end of every run, so a resumed batch has one complete
report, and by `seesr report OUT/` from the outputs' metadata alone. Per image: a before/after
slider (bicubic upscale of the input against the result, zoomable to 1:1 pixels), each tile's
DAPE tags as boxes on hover, seed, settings, seconds per stage and notes; then the failures of
earlier runs with their one-line cause. Self-contained: inline CSS and script, small preview
JPEGs in OUT/.seesr-report/, opens from file:// without any network. Silent: nothing is printed;
`on_progress(done, total)` reports preview making.

    record_run(out, batch_report.results, seconds=batch_report.seconds)   # end of `seesr upscale`
    path = write_report(out)                                              # ... and `seesr report OUT`
"""

from .build import Outcome, ReportError, outcome_of, record_run, write_report
from .entries import Entry, collect
from .store import HIDDEN_DIR, REPORT_NAME

__all__ = ["HIDDEN_DIR", "REPORT_NAME", "Entry", "Outcome", "ReportError", "collect", "outcome_of",
           "record_run", "write_report"]
