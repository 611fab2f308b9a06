SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND (NOT (json_extract(p.attributes, ?) != ?) OR ((json_extract(p.attributes, ?) NOT IN (?)))) ORDER BY p.pk
