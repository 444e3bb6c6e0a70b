"""Benchmarks of the LeadSquared reset DAG under the real scheduler (``make bench``; figures in RESULTS.md).

- ``bench.run``: the command line (``python -m bench.run [--only 1,3,state]``);
- ``bench.targets``: the parts, their set-up constants and targets, the design measured;
- ``bench.scenarios``: parts 1-4, real DAG runs (a session of ``bench.session``: a fresh Airflow home under
  ``bench/out/``, the stack, the emulator, the warehouse, the state store);
- ``bench.probes``: the parts without a DAG run: parse time, planning (probe ``bench.planning``: candidate
  query + planning on 1,000,000 rows, SQLite and PostgreSQL) and the state store's cost per lead (probe
  ``bench.state_cost``);
- ``bench.measure``: the figures, computed from plain records (emulator calls, audit rows, samples), so
  they are tested without Airflow (``tests/bench``);
- ``bench.report``: the Markdown of ``bench/RESULTS.md``, keeping the sections other tools add to it;
- ``bench.cotenant``, ``bench.lead_search``: separate benchmarks with their own command lines;
- ``bench/dags/``: the naive design (one ``HttpOperator`` task per lead) that part 4 compares with.
"""
