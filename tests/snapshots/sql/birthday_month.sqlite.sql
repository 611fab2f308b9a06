SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND ((pql_month(json_extract(p.attributes, ?)) = pql_month(?)) AND json_extract(p.attributes, ?)) ORDER BY p.pk
