SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND (CASE WHEN ((p.attributes -> %(param_2)s::VARCHAR) IS NULL) THEN NULL ELSE EXISTS (SELECT 1 
FROM jsonb_array_elements_text(p.attributes -> %(param_2)s::VARCHAR) AS je1 
WHERE je1.value IN (%(param_3)s::VARCHAR, %(param_4)s::VARCHAR)) END AND NOT CASE WHEN (CAST(floor(EXTRACT(epoch FROM %(as_of)s::TIMESTAMP WITH TIME ZONE - (SELECT e2.ts 
FROM events AS e2 
WHERE e2.profile_pk = p.pk AND e2.ts <= %(as_of)s::TIMESTAMP WITH TIME ZONE AND e2.ts IS NOT NULL ORDER BY e2.ts DESC, e2.event_id COLLATE "C" DESC 
 LIMIT %(param_5)s::INTEGER)) / CAST(%(param_6)s::INTEGER AS NUMERIC)) AS BIGINT) > %(param_7)s::BIGINT) THEN true ELSE false END) ORDER BY p.pk
