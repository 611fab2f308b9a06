SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND (((p.attributes ->> %(param_2)s::VARCHAR) = %(param_3)s::VARCHAR) AND (CAST(p.attributes ->> %(param_4)s::VARCHAR AS BIGINT) >= %(param_5)s::BIGINT) AND (CAST(p.attributes ->> %(param_6)s::VARCHAR AS BIGINT) <= %(param_7)s::BIGINT)) ORDER BY p.pk
