# ruff: noqa: E501  (HTML templates: their lines are markup, not code)
"""The resets page's HTML: Jinja templates kept in this module (no package data to ship), autoescaped.

Links to the Airflow UI itself (the run's grid, another run's tab, the lead search) carry ``data-ui``: inside
the UI's plugin frame (same origin, sandboxed without top navigation) a small script moves the UI with its
own router (``history.pushState`` + ``popstate``); opened on its own, the page follows the link as usual.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import DictLoader, Environment, select_autoescape

from leadsquared_provider.rules.outcomes import OUTCOME_MEANING, RESET_OUTCOMES
from leadsquared_provider.rules.request import ResetScope

# The verification step's results (leadsquared_provider.steps.verify.Check).
VERIFICATION_MEANING = {
    "verified": "the activities the reset was to delete are gone",
    "still_present": "some remain",
    "unverifiable": "could not be read back",
    "nothing_checkable": "the scope deletes no activities: nothing to read back",
}
CATEGORY_LABELS = (
    ("activity_event_codes", "activities"),
    ("task_type_ids", "tasks"),
    ("audit_types", "audits"),
)

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  :root { color-scheme: light; --fg: #1a202c; --muted: #4a5568; --line: #e2e8f0; --bg-alt: #f7fafc;
          --accent: #0b66c3; --bad: #c53030; --warn: #b7791f; --good: #2f855a; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
         margin: 0; padding: 16px 20px 40px; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
  a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
  .muted { color: var(--muted); } .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
  nav.top { display: flex; gap: 16px; margin-bottom: 12px; font-size: 13px; }
  dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 10px 0; }
  dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
  table { border-collapse: collapse; width: 100%; margin: 6px 0; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { background: var(--bg-alt); font-weight: 600; font-size: 13px; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  table.counts { width: auto; min-width: 520px; }
  .badge { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 12px; font-weight: 600;
           background: #edf2f7; }
  .badge.reset { background: #c6f6d5; color: #22543d; } .badge.not-reset { background: #fed7d7; color: #822727; }
  .badge.other { background: #fefcbf; color: #744210; }
  .pager { display: flex; gap: 12px; align-items: center; font-size: 13px; margin: 4px 0 0; }
  form.search { display: flex; gap: 8px; margin: 10px 0 4px; }
  form.search input { width: 380px; padding: 6px 8px; border: 1px solid #cbd5e0; border-radius: 4px; font: inherit; }
  form.search button { padding: 6px 14px; border: 0; border-radius: 4px; background: var(--accent); color: #fff;
                       font: inherit; cursor: pointer; }
  .note { background: var(--bg-alt); border-left: 3px solid var(--line); padding: 6px 10px; margin: 8px 0; }
  .rate-chart .grid { stroke: var(--line); } .rate-chart .axis { font-size: 11px; fill: var(--muted); }
  .rate-chart .rate-area { fill: #bee3f8; } .rate-chart .rate-line { fill: none; stroke: var(--accent); stroke-width: 1.5; }
  .rate-chart .limit { stroke: var(--bad); stroke-dasharray: 6 4; stroke-width: 1.5; }
  .rate-chart .limit-label { font-size: 11px; fill: var(--bad); }
  .rate-chart .share { stroke: var(--warn); stroke-dasharray: 2 3; } .rate-chart .share-label { font-size: 11px; fill: var(--warn); }
  .message { max-width: 560px; overflow-wrap: anywhere; }
</style>
</head>
<body>
<nav class="top">{% block nav %}{% endblock %}</nav>
{% block content %}{% endblock %}
<script>
// In the Airflow UI's plugin frame (same origin, no top navigation allowed): move the UI with its router.
document.addEventListener("click", function (event) {
  var link = event.target.closest && event.target.closest("a[data-ui]");
  if (!link || window.parent === window || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) {
    return;
  }
  try {
    var ui = window.parent, state = ui.history.state || {};
    ui.history.pushState({usr: null, key: Math.random().toString(36).slice(2, 10), idx: (state.idx || 0) + 1},
                         "", link.getAttribute("href"));
    ui.dispatchEvent(new ui.PopStateEvent("popstate", {state: ui.history.state}));
    event.preventDefault();
  } catch (error) { /* another origin: follow the link */ }
});
</script>
</body>
</html>
"""

_MACROS = """
{% macro outcome_badge(outcome) -%}
<span class="badge {{ 'reset' if outcome in reset_outcomes else 'other' if outcome in ('dry_run',) else 'not-reset' }}"
      title="{{ meaning.get(outcome, '') }}">{{ outcome }}</span>
{%- endmacro %}

{% macro pager(page, param, anchor) -%}
{% if page.total > page.size %}
<div class="pager" data-pager="{{ param }}">
  {% if page.number > 1 %}<a href="{{ page_link(param, page.number - 1, anchor) }}">&larr; previous</a>{% endif %}
  <span class="muted">{{ page.first_row }}–{{ page.last_row }} of {{ page.total }} (page {{ page.number }} of {{ page.pages }})</span>
  {% if page.number < page.pages %}<a href="{{ page_link(param, page.number + 1, anchor) }}">next &rarr;</a>{% endif %}
</div>
{% elif page.total %}
<div class="pager muted">{{ page.total }} in all</div>
{% endif %}
{%- endmacro %}

{% macro lead_link(lead_id) -%}
<a class="mono" href="{{ nav_url }}?lead_id={{ lead_id | urlencode }}" data-ui>{{ lead_id }}</a>
{%- endmacro %}
"""

_RUN = """{% extends "base.html" %}
{% from "macros.html" import outcome_badge, pager, lead_link with context %}
{% block nav %}
  <a href="{{ grid_url }}" data-ui>Open the run's grid</a>
  <a href="{{ nav_url }}" data-ui>Search a lead</a>
{% endblock %}
{% block content %}
<h1>Resets of run <span class="mono">{{ run_id }}</span></h1>
<div class="muted">DAG <span class="mono">{{ dag_id }}</span>{% if facts and facts.dry_run %} · <strong>dry run: nothing was sent</strong>{% endif %}</div>

{% if not facts and not counts %}
<p class="note">This run recorded no resets in the state store: it is not a LeadSquared reset run, or its plan
has not run (or failed before planning).</p>
{% else %}
{% if facts %}
<dl class="facts">
  <dt>Window (UTC)</dt><dd class="mono">{{ facts.window['from'] or 'lead creation' }} → {{ facts.window['to'] or 'now' }}</dd>
  <dt>Categories</dt><dd>{{ categories(facts.scope) }}</dd>
  <dt>Candidates</dt><dd>{{ facts.candidates }} in {{ facts.batches }} batch(es) of {{ facts.batch_size }};
     {{ facts.invalid }} id(s) not GUIDs; {{ facts.carried_over }} retried from earlier runs</dd>
  <dt>Planned</dt><dd>{{ utc(facts.planned_at) }}</dd>
  <dt>Reported</dt><dd>{{ utc(facts.reported_at) if facts.reported_at else 'not yet (the report task has not run)' }}</dd>
  <dt>Requests</dt><dd>{{ totals.sends }} sent · {{ totals.rate_limited }} rate-limit answer(s) ·
     {{ totals.possibly_repeated }} lead(s) possibly repeated</dd>
</dl>
{% endif %}

<h2 id="counts">Leads per outcome</h2>
<table class="counts" aria-label="Leads per outcome">
  <thead><tr><th>Outcome</th><th class="num">Leads</th><th>Meaning</th></tr></thead>
  <tbody>
  {% for outcome, count in counts.items() %}
    <tr data-outcome="{{ outcome }}"><td>{{ outcome_badge(outcome) }}</td><td class="num">{{ count }}</td>
        <td class="muted">{{ meaning.get(outcome, '') }}</td></tr>
  {% endfor %}
  </tbody>
  <tfoot><tr><th>total</th><th class="num">{{ counts.values() | sum }}</th><th></th></tr></tfoot>
</table>

<h2 id="rate">Calls per second</h2>
{% if chart %}
{{ chart | safe }}
<div class="muted">{{ series.calls }} request(s) in {{ '%.1f' | format(series.duration) }} s · busiest {{ '%g' | format(series.window_seconds) }} s window:
  {{ series.busiest }} call(s) = {{ '%.2f' | format(series.peak_per_second) }}/s · mean {{ '%.2f' | format(series.mean_per_second) }}/s{% if limit %} · limit {{ '%g' | format(limit.per_second) }}/s{% endif %}.
  Each request's time is estimated from its lead's start, budget wait and finish.</div>
{% else %}
<p class="note">No request was sent by this run.</p>
{% endif %}
{% if limit_note %}<p class="note">{{ limit_note }}</p>{% endif %}

<h2 id="not-reset">Leads not reset</h2>
{% if not_reset.total %}
<table aria-label="Leads not reset">
  <thead><tr><th>Lead</th><th>Outcome</th><th class="num">Status</th><th>Reason</th><th class="num">Attempts</th><th class="num">Batch</th><th>Finished (UTC)</th></tr></thead>
  <tbody>
  {% for row in not_reset.rows %}
    <tr data-lead="{{ row.lead_id }}"><td>{{ lead_link(row.lead_id) }}</td><td>{{ outcome_badge(row.outcome) }}</td>
      <td class="num">{{ row.status_code if row.status_code is not none else '–' }}</td>
      <td class="message">{% if row.exception_type %}<span class="mono">{{ row.exception_type }}</span>: {% endif %}{{ row.message }}</td>
      <td class="num">{{ row.attempts }}</td><td class="num">{{ row.batch }}</td><td>{{ utc(row.finished_at) }}</td></tr>
  {% endfor %}
  </tbody>
</table>
{{ pager(not_reset, 'not_reset_page', 'not-reset') }}
{% else %}
<p class="muted">Every lead of the run was reset (or reset earlier).</p>
{% endif %}

<h2 id="repeated">Possibly repeated requests</h2>
{% if repeated.total %}
<p class="muted">A crash, a takeover or a retry after no clear answer: the reset may have reached LeadSquared more than once.</p>
<table aria-label="Possibly repeated leads">
  <thead><tr><th>Lead</th><th>Outcome</th><th class="num">Requests</th><th>Reason</th><th>Finished (UTC)</th></tr></thead>
  <tbody>
  {% for row in repeated.rows %}
    <tr data-lead="{{ row.lead_id }}"><td>{{ lead_link(row.lead_id) }}</td><td>{{ outcome_badge(row.outcome) }}</td>
      <td class="num">{{ row.sends }}</td><td class="message">{{ row.message }}</td><td>{{ utc(row.finished_at) }}</td></tr>
  {% endfor %}
  </tbody>
</table>
{{ pager(repeated, 'repeated_page', 'repeated') }}
{% else %}
<p class="muted">None.</p>
{% endif %}

{# ---- Verification: shown once the verification step's table (leadsquared_reset_verification) exists. ---- #}
{% if verification %}
<h2 id="verification">Verification</h2>
<p class="muted">A sample of the leads LeadSquared queued, read back later: are the activities the reset was to delete gone?</p>
{% if verification.result_column %}
<table class="counts" aria-label="Verification results">
  <thead><tr><th>Result</th><th class="num">Leads</th><th>Meaning</th></tr></thead>
  <tbody>{% for result, count in verification.counts.items() %}<tr data-result="{{ result }}"><td>{{ result }}</td><td class="num">{{ count }}</td><td class="muted">{{ verification_meaning.get(result, '') }}</td></tr>{% endfor %}</tbody>
</table>
{% if verification.not_verified.total %}
<table aria-label="Leads not verified">
  <thead><tr>{% for name in verification.columns %}<th>{{ name }}</th>{% endfor %}</tr></thead>
  <tbody>
  {% for row in verification.not_verified.rows %}
    <tr data-lead="{{ row.lead_id }}">{% for name in verification.columns %}<td>{% if name == 'lead_id' %}{{ lead_link(row[name]) }}{% elif row[name] is none %}–{% elif name.endswith('_at') and row[name] is number %}{{ utc(row[name]) }}{% else %}{{ row[name] }}{% endif %}</td>{% endfor %}</tr>
  {% endfor %}
  </tbody>
</table>
{{ pager(verification.not_verified, 'verification_page', 'verification') }}
{% endif %}
{% else %}
<p class="note">The verification table has no run_key, lead_id and result column this page knows.</p>
{% endif %}
{% endif %}
{% endif %}
{% endblock %}
"""

_LEADS = """{% extends "base.html" %}
{% from "macros.html" import outcome_badge, pager with context %}
{% block content %}
<h1>LeadSquared lead resets</h1>
<form class="search" method="get" action="{{ app_root }}/leads" role="search">
  <label for="lead_id" class="muted" style="align-self:center">Lead id</label>
  <input id="lead_id" name="lead_id" value="{{ lead_id or '' }}" placeholder="e.g. 2f1b6c8e-0000-4000-8000-000000000000"
         autocomplete="off" spellcheck="false" required>
  <button type="submit">Search</button>
</form>

{% if lead_id %}
<h2 id="history">Runs that touched <span class="mono">{{ lead_id }}</span></h2>
{% if history.total %}
<table aria-label="Lead history">
  <thead><tr><th>Run</th><th>Window (UTC)</th><th>Categories</th><th>Outcome</th><th class="num">Attempts</th>
             <th>Started (UTC)</th><th>Finished (UTC)</th><th>Message</th></tr></thead>
  <tbody>
  {% for row in history.rows %}
    {% set run = run_of(row.run_key) %}
    <tr data-run="{{ row.run_key }}">
      <td><a class="mono" href="{{ run_url(run) }}" data-ui>{{ run.run_id }}</a>
          <div class="muted">{{ row.dag_id }} · batch {{ row.batch }}</div></td>
      <td class="mono">{{ row.from_date or 'lead creation' }}<br>{{ row.to_date or 'now' }}</td>
      <td>{{ categories(row.categories) }}</td>
      <td>{{ outcome_badge(row.outcome) }}{% if row.possibly_repeated %}<div class="muted">possibly repeated</div>{% endif %}</td>
      <td class="num">{{ row.attempts }}{% if row.sends != row.attempts %} <span class="muted">({{ row.sends }} sent)</span>{% endif %}</td>
      <td>{{ utc(row.started_at) }}</td><td>{{ utc(row.finished_at) }}</td>
      <td class="message">{% if row.status_code is not none %}<span class="mono">{{ row.status_code }}</span> {% endif %}{% if row.exception_type %}<span class="mono">{{ row.exception_type }}</span>: {% endif %}{{ row.message }}</td>
    </tr>
  {% endfor %}
  </tbody>
</table>
{{ pager(history, 'page', 'history') }}
{% else %}
<p class="note">No run {{ 'you may read ' if filtered else '' }}touched this lead.</p>
{% endif %}
{% endif %}

<h2 id="runs">Recent runs</h2>
{% if runs.total %}
<table aria-label="Recent runs">
  <thead><tr><th>Run</th><th>DAG</th><th>Window (UTC)</th><th class="num">Candidates</th><th class="num">Not resolved</th><th>Planned (UTC)</th></tr></thead>
  <tbody>
  {% for row in runs.rows %}
    <tr><td><a class="mono" href="{{ run_url(row) }}" data-ui>{{ row.run_id }}</a>{% if row.dry_run %} <span class="badge other">dry run</span>{% endif %}</td>
      <td class="mono">{{ row.dag_id }}</td>
      <td class="mono">{{ row.window['from'] or 'lead creation' }} → {{ row.window['to'] or 'now' }}</td>
      <td class="num">{{ row.candidates }}</td>
      <td class="num">{{ row.unresolved if row.unresolved is not none else 'not reported' }}</td>
      <td>{{ utc(row.planned_at) }}</td></tr>
  {% endfor %}
  </tbody>
</table>
{{ pager(runs, 'runs_page', 'runs') }}
{% else %}
<p class="muted">No run planned resets yet.</p>
{% endif %}
{% endblock %}
"""

_ERROR = """{% extends "base.html" %}
{% block content %}
<h1>{{ heading }}</h1>
<p class="note">{{ detail }}</p>
{% endblock %}
"""

_env = Environment(
    loader=DictLoader(
        {"base.html": _BASE, "macros.html": _MACROS, "run.html": _RUN, "leads.html": _LEADS, "error.html": _ERROR}
    ),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def utc(epoch: float | None) -> str:
    if epoch is None:
        return "–"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def categories(value: str | ResetScope | None) -> str:
    """``activities 166, 167 · audits StageChange · notes`` from a scope or an audit row's categories JSON."""
    if not value:
        return "–"
    picked = json.loads(value) if isinstance(value, str) else value.to_dict()
    parts = [
        f"{label} {', '.join(str(item) for item in picked[key])}" for key, label in CATEGORY_LABELS if picked.get(key)
    ]
    if picked.get("delete_notes"):
        parts.append("notes")
    return " · ".join(parts) or "none"


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(
        utc=utc,
        categories=categories,
        meaning=OUTCOME_MEANING,
        verification_meaning=VERIFICATION_MEANING,
        reset_outcomes=RESET_OUTCOMES,
        **context,
    )
