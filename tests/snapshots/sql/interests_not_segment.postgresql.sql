WITH seg4 AS MATERIALIZED 
(SELECT sp2.pk AS pk 
FROM profiles AS sp2 
WHERE (CAST(floor(EXTRACT(epoch FROM %(as_of)s::TIMESTAMP WITH TIME ZONE - (SELECT e3.ts 
FROM events AS e3 
WHERE e3.profile_pk = sp2.pk AND e3.ts <= %(as_of)s::TIMESTAMP WITH TIME ZONE AND e3.ts IS NOT NULL ORDER BY e3.ts DESC 
 LIMIT %(param_5)s::INTEGER)) / CAST(%(param_6)s::INTEGER AS NUMERIC)) AS BIGINT) > %(param_7)s::BIGINT) AND sp2.sandbox = %(param_8)s::VARCHAR)
 SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND (CASE WHEN ((p.attributes -> %(param_2)s::VARCHAR) IS NULL) THEN NULL ELSE EXISTS (SELECT 1 
FROM jsonb_array_elements_text(p.attributes -> %(param_2)s::VARCHAR) AS je1 
WHERE je1.value IN (%(param_3)s::VARCHAR, %(param_4)s::VARCHAR)) END AND NOT (p.pk IN (SELECT seg4.pk 
FROM seg4))) ORDER BY p.pk
