"""The fleet: many build hosts, one view, through one PostgreSQL database.

Each host keeps its own store and its authority over it; its agent keeps a replica of the
store in PostgreSQL and runs the requests sent to it. One module per job:

* ``url``: checking fleet URLs, masking passwords, opening the Peewee database;
* ``schema``: the tables, their version and in-place migrations, notifications;
* ``publisher``: writing one store's replica (registration, heartbeat, records, GC runs);
* ``requests``: the request queue (send, take, progress, finish, expire, wait);
* ``executor``: running one request through the dashboard's own service calls;
* ``agent``: the agent's threads, reconnection and re-synchronisation;
* ``reader``: the read API for dashboards and the command line (documented there).

Nothing in ``cachetui.core`` imports this package.
"""
