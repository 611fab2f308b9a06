SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND ((CAST(EXTRACT(month FROM CAST(p.attributes ->> %(param_2)s::VARCHAR AS DATE)) AS BIGINT) = CAST(EXTRACT(month FROM %(param_3)s::DATE) AS BIGINT)) AND CAST(p.attributes ->> %(param_4)s::VARCHAR AS BOOLEAN)) ORDER BY p.pk
