SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND (EXISTS (SELECT 1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = %(param_2)s::VARCHAR) AND e1.ts > %(param_3)s::TIMESTAMP WITH TIME ZONE AND e1.ts <= %(param_4)s::TIMESTAMP WITH TIME ZONE AND (EXISTS (SELECT 1 
FROM events AS e2 
WHERE e2.profile_pk = e1.profile_pk AND (e2.type = %(param_5)s::VARCHAR) AND e2.ts > e1.ts AND e2.ts <= %(as_of)s::TIMESTAMP WITH TIME ZONE AND e2.ts <= (e1.ts + CAST(%(param_6)s::VARCHAR AS INTERVAL)) AND NOT (EXISTS (SELECT 1 
FROM events AS e3 
WHERE e3.profile_pk = e2.profile_pk AND (e3.type = %(param_7)s::VARCHAR) AND e3.ts > e2.ts AND e3.ts <= %(as_of)s::TIMESTAMP WITH TIME ZONE AND e3.ts <= (e2.ts + CAST(%(param_8)s::VARCHAR AS INTERVAL)))))))) ORDER BY p.pk
