SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND (CAST(floor(EXTRACT(epoch FROM %(as_of)s::TIMESTAMP WITH TIME ZONE - (SELECT e1.ts 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = %(param_2)s::VARCHAR) AND e1.ts <= %(as_of)s::TIMESTAMP WITH TIME ZONE AND e1.ts IS NOT NULL ORDER BY e1.ts DESC 
 LIMIT %(param_3)s::INTEGER)) / CAST(%(param_4)s::INTEGER AS NUMERIC)) AS BIGINT) > %(param_5)s::BIGINT) ORDER BY p.pk
