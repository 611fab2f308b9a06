SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND ((right(lower(p.attributes ->> %(param_2)s::VARCHAR), length(%(param_3)s::VARCHAR)) = %(param_3)s::VARCHAR) OR ((p.attributes ->> %(param_4)s::VARCHAR) ~ %(param_5)s::VARCHAR)) ORDER BY p.pk
