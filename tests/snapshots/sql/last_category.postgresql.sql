SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND ((SELECT e1.fields ->> %(param_2)s::VARCHAR AS anon_1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = %(param_3)s::VARCHAR) AND e1.ts <= %(as_of)s::TIMESTAMP WITH TIME ZONE AND (e1.fields ->> %(param_2)s::VARCHAR) IS NOT NULL ORDER BY e1.ts DESC, e1.event_id COLLATE "C" DESC 
 LIMIT %(param_4)s::INTEGER) != (p.attributes ->> %(param_5)s::VARCHAR)) ORDER BY p.pk
