WITH seg4 AS MATERIALIZED 
(SELECT sp2.pk AS pk 
FROM profiles AS sp2 
WHERE (pql_days_since(?, (SELECT e3.ts 
FROM events AS e3 
WHERE e3.profile_pk = sp2.pk AND e3.ts <= ? AND e3.ts IS NOT NULL ORDER BY e3.ts DESC
 LIMIT ? OFFSET ?)) > ?) AND sp2.sandbox = ?)
 SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND (CASE WHEN (json_extract(p.attributes, ?) IS NULL) THEN NULL ELSE EXISTS (SELECT 1 
FROM json_each(json_extract(p.attributes, ?)) AS je1 
WHERE je1.value IN (?, ?)) END = 1 AND NOT (p.pk IN (SELECT seg4.pk 
FROM seg4))) ORDER BY p.pk
