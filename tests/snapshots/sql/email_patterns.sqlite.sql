SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = ? AND ((substr(pql_lower(json_extract(p.attributes, ?)), (length(pql_lower(json_extract(p.attributes, ?))) - length(?)) + ?) = ?) OR pql_regex(json_extract(p.attributes, ?), ?)) ORDER BY p.pk
