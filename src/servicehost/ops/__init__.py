"""The operations view: what a running service says of itself, the same on every platform.

    status.py   the one status document (state and since when, every component's counters, the
                last error, versions), read from the host; the control channel answers ``status``
                with it, ``servicehost status`` renders it, systemd's ``STATUS=`` is its summary
    loglevel.py a logger's level changed in a running service (``loglevel``), back by itself after
                ``--for``
    threads.py  every thread's stack (``threads``): taken in the service, shown as a traceback
    settings.py the effective settings, secrets redacted (``config``)
    health.py   health checks a service declares (``Service.health_check``: Health, timeout, cache,
                tags) and the probes' verdicts: readiness (RUNNING + ``ready`` checks), liveness
                (heartbeats + ``live`` checks)
    http.py     the optional HTTP listener (setting ``http``; imported only then): /livez, /readyz,
                /status, /metrics, the page; read only, Host-checked, on an EventServer
    page.py     the status page's files (``static/``: page.html, page.js, page.css, favicon.svg)
    metrics.py  the Prometheus exposition (``render(host) -> bytes``, text format 0.0.4), served at
                /metrics: counters and :class:`~servicehost.components.Measures` of every component,
                timers, log messages by level (``logs.MESSAGES``), health checks

It reads the host and the component contract (``components.py``) and imports no platform; the
platforms only carry what it makes (the control channel, sd_notify, the SCM).
"""
