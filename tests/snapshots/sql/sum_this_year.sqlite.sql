SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND (CAST((SELECT CASE WHEN (abs(total(CAST(json_extract(e1.fields, ?) AS FLOAT))) <= ?) THEN total(CAST(json_extract(e1.fields, ?) AS FLOAT)) ELSE NULL END AS anon_1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = ?) AND e1.ts >= ? AND e1.ts <= ?) AS FLOAT) > ?) ORDER BY p.pk
