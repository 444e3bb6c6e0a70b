-- Candidate leads of one run: one column, the LeadSquared lead id (ProspectId).
-- Rendered with Jinja before it runs. The run's window is half-open, in UTC, as 'YYYY-MM-DD HH:MM:SS':
--   window_start  its first instant, inclusive:  requested_at >= window_start
--   window_end    the instant after it, exclusive: requested_at <  window_end
-- so consecutive daily windows meet with neither a gap nor an overlap (a row at 23:59:59.5 belongs to
-- exactly one day; never use BETWEEN). Both are None for an all-time run; the run's context is there too.
-- PostgreSQL and MySQL/MariaDB sessions read in UTC (the plan sets the session's time zone), so a
-- timestamptz or TIMESTAMP column compares in UTC; on another warehouse, compare in UTC yourself.
-- Replace the table and the condition with your own; ids are trimmed, lower-cased, de-duplicated and
-- checked to be GUIDs after the query, so the query need not do it.
SELECT prospect_id
FROM lsq_reset_requests
{% if window_start %}
WHERE requested_at >= '{{ window_start }}' AND requested_at < '{{ window_end }}'
{% endif %}
