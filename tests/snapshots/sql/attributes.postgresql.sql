SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND (((p.attributes ->> %(param_2)s::VARCHAR) IN (%(param_3)s::VARCHAR, %(param_4)s::VARCHAR)) AND ((p.attributes ->> %(param_5)s::VARCHAR) = %(param_6)s::VARCHAR) AND (CAST(p.attributes ->> %(param_7)s::VARCHAR AS BIGINT) > %(param_8)s::BIGINT)) ORDER BY p.pk
