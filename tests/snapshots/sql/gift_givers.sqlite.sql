SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND ((json_extract(p.attributes, ?) IS NOT NULL) AND (EXISTS (SELECT 1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = ?) AND e1.ts > ? AND e1.ts <= ? AND (json_extract(e1.fields, ?) != json_extract(p.attributes, ?)) AND (json_extract(e1.fields, ?) != json_extract(p.attributes, ?)))) AND p.pk IN (SELECT e2.profile_pk 
FROM events AS e2 
WHERE (e2.type = ?) AND e2.ts > ? AND e2.ts <= ? AND NOT (EXISTS (SELECT 1 
FROM events AS e3 
WHERE e3.profile_pk = e2.profile_pk AND (e3.type = ?) AND e3.ts > e2.ts AND e3.ts <= ? AND e3.ts <= coalesce(datetime(e2.ts, ?) || substr(e2.ts, ?), ?))))) ORDER BY p.pk
