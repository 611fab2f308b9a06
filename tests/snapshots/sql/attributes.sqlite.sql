SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND ((json_extract(p.attributes, ?) IN (?, ?)) AND (json_extract(p.attributes, ?) = ?) AND (json_extract(p.attributes, ?) > ?)) ORDER BY p.pk
