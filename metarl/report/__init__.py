"""The generated results page: ``python -m metarl.report [--root results|reports] [--readme README.md]``.

Reads, under ``<root>`` (one folder per benchmark or experiment, as ``make bench`` writes them):

* every file, to list it: tables (``*.md``, ``*.csv``), figures (``*.png``, ``*.svg``, ``*.pdf``), run
  records and summaries (``*.json``) and anything else; an orbax checkpoint folder is one entry;
* every ``*.json`` outside checkpoints, for its run record: scale, seeds, device, package versions,
  wall time, compile time and time of writing, wherever the file has them (each benchmark names them
  a little differently; see ``run_record``);
* ``summary.json`` and ``*_summary.json``, for their compared rows: every object that carries
  ``"iqm"`` / ``"ci"`` / ``"verdict"`` (as ``metarl.stats.summary_row`` and a verdict write them),
  the ``iqm_a`` / ``ci_a`` / ``claim_verdict`` of ``metarl.stats.compare``, or a ``"target"`` / ``"met"``
  pair (the throughput targets). A row without an interval is shown as "no interval yet".

Writes ``<root>/index.md`` (every table and figure of every paper with its run record), and with
``--readme`` replaces the block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in that
file with the results-at-a-glance table, touching nothing outside the markers. Both are written
atomically (a temporary file in the same folder, then ``os.replace``).

It never reads outside the repository (``root`` and ``readme`` must resolve inside it, symbolic links
that lead out are listed but not followed or read) and imports neither jax nor matplotlib: it runs in
well under a second.

Modules: scan (folders, files, safe writes), records (run records, compared rows), page (the index and
the README block), command (the command line); every name is re-exported here.
"""
from metarl.report.scan import *  # noqa: F401,F403
from metarl.report.records import *  # noqa: F401,F403
from metarl.report.page import *  # noqa: F401,F403
from metarl.report.command import *  # noqa: F401,F403
