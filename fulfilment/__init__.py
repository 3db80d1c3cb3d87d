"""The automated fulfilment centre's operational database: its schema (``schema.sql``, what
Debezium's source captures) and a load generator that writes to it as robots, conveyor
segments, totes and order picks do (``load``)."""
