"""Smoke test of the local lake: the REST catalog (docker/iceberg-rest) and S3Proxy.

    python smoke.py write   # create namespace smoke and table smoke.rows if missing, append 3 rows
    python smoke.py read    # read the rows back; check each data file is an object in the bucket

Needs PyIceberg with pyarrow (pip install 'pyiceberg[pyarrow]'); it is not a dependency of the
project. Settings from the environment: ICEBERG_URI (default http://127.0.0.1:8181), S3_ENDPOINT
(default http://127.0.0.1:9000), CONVEYOR_S3_ACCESS_KEY_ID and CONVEYOR_S3_SECRET_ACCESS_KEY
(the key pair S3Proxy was started with). ICEBERG_VENDED=1 leaves the key pair out of the client
and uses what the catalog vends (CATALOG_INCLUDE__CREDENTIALS=true on the catalog).
"""

import os
import sys
import time
from urllib.parse import urlparse

import pyarrow as pa
from pyarrow import fs
from pyiceberg.catalog import load_catalog

TABLE = "smoke.rows"
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("written_at", pa.int64())])


def catalog():
    props = {
        "type": "rest",
        "uri": os.environ.get("ICEBERG_URI", "http://127.0.0.1:8181"),
        # The catalog does not tell clients where S3 is: each client names its own endpoint.
        "s3.endpoint": os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"),
        "s3.path-style-access": "true",
        "s3.region": "us-east-1",
    }
    if os.environ.get("ICEBERG_VENDED") != "1":
        props["s3.access-key-id"] = os.environ["CONVEYOR_S3_ACCESS_KEY_ID"]
        props["s3.secret-access-key"] = os.environ["CONVEYOR_S3_SECRET_ACCESS_KEY"]
    return load_catalog("smoke", **props)


def rows(table):
    return sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])


def write(cat):
    cat.create_namespace_if_not_exists("smoke")
    table = cat.create_table_if_not_exists(TABLE, schema=SCHEMA)
    before = len(rows(table))
    start = max([r["id"] for r in rows(table)], default=0) + 1
    now = int(time.time())
    ids = list(range(start, start + 3))
    table.append(pa.table({"id": ids, "name": [f"row-{i}" for i in ids], "written_at": [now] * 3},
                          schema=SCHEMA))
    after = rows(cat.load_table(TABLE))
    print(f"appended ids {ids}; the table has {len(after)} rows")
    if len(after) != before + 3:
        sys.exit(f"expected {before + 3} rows, read {len(after)}")


def read(cat):
    table = cat.load_table(TABLE)
    io = table.io.properties
    if "s3.access-key-id" not in io:
        sys.exit("the catalog vended no S3 key pair: start it with CATALOG_S3_ACCESS__KEY__ID, "
                 "CATALOG_S3_SECRET__ACCESS__KEY and CATALOG_INCLUDE__CREDENTIALS=true")
    found = rows(table)
    for r in found:
        print(r)
    if not found:
        sys.exit("no rows")
    # Every data file of the current snapshot must be an object in the bucket, of its size.
    endpoint = urlparse(os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"))
    s3 = fs.S3FileSystem(access_key=io["s3.access-key-id"], secret_key=io["s3.secret-access-key"],
                         endpoint_override=endpoint.netloc, scheme=endpoint.scheme,
                         region="us-east-1", force_virtual_addressing=False)
    location = urlparse(table.location())
    listed = {
        f"s3://{info.path}": info.size
        for info in s3.get_file_info(fs.FileSelector(f"{location.netloc}{location.path}",
                                                     recursive=True))
        if info.type == fs.FileType.File
    }
    files = [task.file for task in table.scan().plan_files()]
    for f in files:
        if listed.get(f.file_path) != f.file_size_in_bytes:
            sys.exit(f"data file {f.file_path} ({f.file_size_in_bytes} bytes) is not in the bucket "
                     f"as such: {listed.get(f.file_path)}")
    print(f"{len(found)} rows in {len(files)} data files, all in the bucket; "
          f"{len(listed)} objects under {table.location()}")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode not in ("write", "read"):
        sys.exit(__doc__)
    {"write": write, "read": read}[mode](catalog())
