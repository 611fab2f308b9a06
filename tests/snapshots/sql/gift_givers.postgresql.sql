SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND (((p.attributes ->> %(param_2)s::VARCHAR) IS NOT NULL) AND (EXISTS (SELECT 1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = %(param_3)s::VARCHAR) AND e1.ts > %(param_4)s::TIMESTAMP WITH TIME ZONE AND e1.ts <= %(param_5)s::TIMESTAMP WITH TIME ZONE AND ((e1.fields ->> %(param_6)s::VARCHAR) != (p.attributes ->> %(param_7)s::VARCHAR)) AND ((e1.fields ->> %(param_8)s::VARCHAR) != (p.attributes ->> %(param_9)s::VARCHAR)))) AND (EXISTS (SELECT 1 
FROM events AS e2 
WHERE e2.profile_pk = p.pk AND (e2.type = %(param_10)s::VARCHAR) AND e2.ts > %(param_11)s::TIMESTAMP WITH TIME ZONE AND e2.ts <= %(param_12)s::TIMESTAMP WITH TIME ZONE AND NOT (EXISTS (SELECT 1 
FROM events AS e3 
WHERE e3.profile_pk = e2.profile_pk AND (e3.type = %(param_13)s::VARCHAR) AND e3.ts > e2.ts AND e3.ts <= %(as_of)s::TIMESTAMP WITH TIME ZONE AND e3.ts <= (e2.ts + CAST(%(param_14)s::VARCHAR AS INTERVAL))))))) ORDER BY p.pk
