SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND (pql_days_since(?, (SELECT e1.ts 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = ?) AND e1.ts <= ? AND e1.ts IS NOT NULL ORDER BY e1.ts DESC
 LIMIT ? OFFSET ?)) > ?) ORDER BY p.pk
