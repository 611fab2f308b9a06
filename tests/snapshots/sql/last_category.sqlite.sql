SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND ((SELECT json_extract(e1.fields, ?) AS json_extract_1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = ?) AND e1.ts <= ? AND json_extract(e1.fields, ?) IS NOT NULL ORDER BY e1.ts DESC, e1.event_id DESC
 LIMIT ? OFFSET ?) != json_extract(p.attributes, ?)) ORDER BY p.pk
