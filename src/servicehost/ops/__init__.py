"""The operations view: what a running service says of itself, the same on every platform.

    status.py   the one status document (state and since when, every component's counters, the
                last error, versions), read from the host; the control channel answers ``status``
                with it, ``servicehost status`` renders it, systemd's ``STATUS=`` is its summary
    loglevel.py a logger's level changed in a running service (``loglevel``), back by itself after
                ``--for``

It reads the host and the component contract (``components.py``) and imports no platform; the
platforms only carry what it makes (the control channel, sd_notify, the SCM).
"""
