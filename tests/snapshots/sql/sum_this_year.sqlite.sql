SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND ((SELECT CASE WHEN (abs(total(json_extract(e1.fields, ?))) <= ?) THEN total(json_extract(e1.fields, ?)) ELSE NULL END AS anon_1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = ?) AND e1.ts >= ? AND e1.ts <= ?) > ?) ORDER BY p.pk
