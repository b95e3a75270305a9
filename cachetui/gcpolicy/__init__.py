"""GC policy files and Docker's filters.

``dockerfilter`` translates Docker's ``key=value`` filters (``until=24h``,
``type=regular``) into the containerd language and a keep duration; the command line's
``--filter`` uses it, and so do GC policy files written for ``daemon.json``.
"""
