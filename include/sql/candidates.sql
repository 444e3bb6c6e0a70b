-- Candidate leads of one run: one column, the LeadSquared lead id (ProspectId).
-- Rendered with Jinja before it runs. `window_start` / `window_end` are the run's window in UTC as
-- 'YYYY-MM-DD HH:MM:SS' (both inclusive), or None for an all-time run; the run's context is there too.
-- Replace the table and the condition with your own; ids are trimmed, lower-cased, de-duplicated and
-- checked to be GUIDs after the query, so the query need not do it.
SELECT prospect_id
FROM lsq_reset_requests
{% if window_start %}
WHERE requested_at BETWEEN '{{ window_start }}' AND '{{ window_end }}'
{% endif %}
