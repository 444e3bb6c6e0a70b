"""Benchmarks of the LeadSquared reset DAG under the real scheduler (``make bench``; figures in RESULTS.md).

- ``bench.measure``: the figures, computed from plain records (emulator calls, audit rows, samples), so
  they are tested without Airflow (``tests/bench``);
- ``bench.planning``: the candidate query + planning probe on a large warehouse table (SQLite, PostgreSQL);
- ``bench.session``: one bench session: a fresh Airflow home under ``bench/out/``, the stack, the emulator;
- ``bench.run``: the scenarios, the command line and ``bench/RESULTS.md``;
- ``bench/dags/``: the naive design (one ``HttpOperator`` task per lead) it is compared with.
"""
