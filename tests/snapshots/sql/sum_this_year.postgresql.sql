SELECT p.external_id 
FROM profiles AS p 
WHERE p.sandbox = %(param_1)s::VARCHAR AND ((SELECT CASE WHEN (count(w2.v) = %(count_1)s::INTEGER) THEN %(param_2)s WHEN bool_and(w2.m <= %(param_3)s / CAST(greatest(w2.n, %(greatest_1)s::INTEGER) AS NUMERIC)) THEN sum(CASE WHEN (w2.m <= %(param_3)s / CAST(greatest(w2.n, %(greatest_1)s::INTEGER) AS NUMERIC)) THEN w2.v ELSE NULL END) ELSE NULL END AS anon_1 
FROM (SELECT CAST(e1.fields ->> %(param_4)s::VARCHAR AS FLOAT(53)) AS v, max(abs(CAST(e1.fields ->> %(param_4)s::VARCHAR AS FLOAT(53)))) OVER () AS m, count(CAST(e1.fields ->> %(param_4)s::VARCHAR AS FLOAT(53))) OVER () AS n 
FROM events AS e1 
WHERE e1.profile_pk = p.pk AND (e1.type = %(param_5)s::VARCHAR) AND e1.ts >= %(param_6)s::TIMESTAMP WITH TIME ZONE AND e1.ts <= %(param_7)s::TIMESTAMP WITH TIME ZONE) AS w2) > %(param_8)s) ORDER BY p.pk
