SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND ((SELECT coalesce(sum(CAST(e1.fields ->> %(param_2)s::VARCHAR AS FLOAT(53))), %(coalesce_2)s) AS coalesce_1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = %(param_3)s::VARCHAR) AND e1.ts >= %(param_4)s::TIMESTAMP WITH TIME ZONE AND e1.ts <= %(param_5)s::TIMESTAMP WITH TIME ZONE) > %(param_6)s::BIGINT) ORDER BY p.pk
