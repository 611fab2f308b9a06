"""Segments: stored expressions and the memberships of profiles in them — saving and reading
(service.py), batch evaluation into memberships (batch.py) run as jobs and on a schedule (jobs.py),
re-evaluation of one profile after a merge (membership.py). The HTTP routes are
cdp/api/routes/segments.py."""
