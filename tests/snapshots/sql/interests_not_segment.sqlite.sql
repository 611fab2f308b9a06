SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND (CASE WHEN (json_extract(p.attributes, ?) IS NULL) THEN NULL ELSE EXISTS (SELECT 1 
FROM json_each(json_extract(p.attributes, ?)) AS je1 
WHERE je1.value IN (?, ?)) END = 1 AND CASE WHEN (pql_days_since(?, (SELECT e2.ts 
FROM events AS e2 
WHERE e2.profile_pk = p.pk AND e2.ts <= ? AND e2.ts IS NOT NULL ORDER BY e2.ts DESC, e2.event_id DESC
 LIMIT ? OFFSET ?)) > ?) THEN 1 ELSE 0 END = 0) ORDER BY p.pk
