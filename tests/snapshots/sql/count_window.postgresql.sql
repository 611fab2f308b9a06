SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND ((SELECT count(*) AS count_1 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = %(param_2)s::VARCHAR) AND e1.ts > %(param_3)s::TIMESTAMP WITH TIME ZONE AND e1.ts <= %(param_4)s::TIMESTAMP WITH TIME ZONE) >= %(param_5)s::BIGINT) ORDER BY p.pk
