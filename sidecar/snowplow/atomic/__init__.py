"""Snowplow's own table layout, the open-source Postgres loader's, written by enrich.

- ``events``: a good event as one ``atomic.events`` row (the loader's 128 columns);
- ``entities``: a self-describing entity as a row of its schema's table
  (``com_acme_product_1``: the loader's meta columns, then the schema's own);
- ``types``: the loader's column types as Avro that Debezium's JDBC sink creates as such;
- ``layout``: what one event adds in this layout, written in the event's transaction.

The connectors ``warehouse-snowplow-atomic`` and ``warehouse-snowplow-entities``
(connectors/configs/local) land them; ``tests/contract`` holds the tables to the loader's.
"""
