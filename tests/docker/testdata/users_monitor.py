#!/usr/bin/python3
"""Our users' monitor, as their field report describes it (a root cron job
run every 5 or 10 seconds), kept as close to it as the report allows: it
reads the newest failover_log row on both nodes and points the
application's YAML settings at the host of the newer one.

    users_monitor.py DB01 DB02 SETTINGS.yaml RESTART_COMMAND

Before pg_keeper_go recorded the initial primary, failover_log was empty
until the first failover and this script died with a TypeError (row is
None).  It prints the host it chose.
"""
import subprocess
import sys

import psycopg2
import yaml

db01, db02, settings, restart = sys.argv[1:5]


def newest(host):
    """The newest failover_log row of host, and whether host answered."""
    try:
        conn = psycopg2.connect("postgresql://postgres@%s:5432/pg_state" % host, connect_timeout=2)
    except psycopg2.Error:
        return None, False
    try:
        cur = conn.cursor()
        cur.execute("select * from failover_log order by unixtime desc limit 1")
        return cur.fetchone(), True
    finally:
        conn.close()


row1, up1 = newest(db01)
row2, up2 = newest(db02)
if up1 and up2:
    # "if both answer, pick the host of the row with the larger unixtime"
    master = row1[1] if row1[0] >= row2[0] else row2[1]
elif up1:
    master = row1[1]
elif up2:
    master = row2[1]
else:
    sys.exit("neither node answered")
slave = db02 if master == db01 else db01

with open(settings) as f:
    conf = yaml.safe_load(f)
if conf["db_master"][0]["address"] != "%s:5432" % master or conf["db_slave"][0]["address"] != "%s:5432" % slave:
    conf["db_master"][0]["address"] = "%s:5432" % master
    conf["db_slave"][0]["address"] = "%s:5432" % slave
    with open(settings, "w") as f:
        yaml.safe_dump(conf, f)
    subprocess.run(restart, shell=True, check=True)
print(master)
