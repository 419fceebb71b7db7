"""``win32timezone`` — the real pywin32 module on Windows; elsewhere ``now()``, ``utcnow()`` and
``TimeZoneInfo.local()``/``.utc()``, aware datetimes in this machine's zone and in UTC. Frozen
pywin32 services import it so that pywintypes' times have a zone; naming a Windows zone
(``TimeZoneInfo("Pacific Standard Time")``) reads Windows' zone database and is not available:
``zoneinfo.ZoneInfo`` takes the IANA names."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    from ..platforms.windows.pywin32 import pywin32_module

    sys.modules[__name__] = pywin32_module("win32timezone")
else:
    import calendar
    import datetime
    import time
    from typing import Any

    from . import _unavailable

    class TimeZoneInfo(datetime.tzinfo):
        """pywin32's zone, a :class:`datetime.tzinfo`: here :meth:`local` and :meth:`utc`."""

        def __init__(self, param: Any = None, fix_standard_time: bool = False) -> None:
            raise NotImplementedError(
                f"win32timezone.TimeZoneInfo({param!r}) reads Windows' time zone database, which is not here "
                "(servicehost.compat): use zoneinfo.ZoneInfo with an IANA name (\"America/Los_Angeles\"), or "
                f"TimeZoneInfo.local() / TimeZoneInfo.utc() ({_unavailable.DOCS})")

        @classmethod
        def local(cls) -> TimeZoneInfo:
            """This machine's zone, daylight saving time included (what the C library's localtime says)."""
            return _Local()

        @classmethod
        def utc(cls) -> TimeZoneInfo:
            return _Utc()

    class _Local(TimeZoneInfo):
        def __init__(self) -> None:  # noqa: D107 (no Windows zone to read)
            pass

        def _struct(self, dt: datetime.datetime) -> time.struct_time:
            return time.localtime(time.mktime((dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, 0, 0, -1)))

        def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
            local = self._struct(dt) if dt is not None else time.localtime()
            return datetime.timedelta(seconds=local.tm_gmtoff)

        def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
            local = self._struct(dt) if dt is not None else time.localtime()
            return datetime.timedelta(seconds=local.tm_gmtoff + time.timezone) if local.tm_isdst > 0 else datetime.timedelta(0)

        def tzname(self, dt: datetime.datetime | None) -> str:
            return (self._struct(dt) if dt is not None else time.localtime()).tm_zone

        def fromutc(self, dt: datetime.datetime) -> datetime.datetime:
            local = time.localtime(calendar.timegm(dt.timetuple()))  # dt: UTC fields
            return datetime.datetime(*local[:6], microsecond=dt.microsecond, tzinfo=self)

        def __repr__(self) -> str:
            return "TimeZoneInfo.local()"

    class _Utc(TimeZoneInfo):
        def __init__(self) -> None:  # noqa: D107
            pass

        def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
            return datetime.timedelta(0)

        def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
            return datetime.timedelta(0)

        def tzname(self, dt: datetime.datetime | None) -> str:
            return "UTC"

        def __repr__(self) -> str:
            return "TimeZoneInfo.utc()"

    def now() -> datetime.datetime:
        """The time now, in this machine's zone."""
        return datetime.datetime.now(TimeZoneInfo.local())

    def utcnow() -> datetime.datetime:
        """The time now, in UTC."""
        return datetime.datetime.now(TimeZoneInfo.utc())

    UNAVAILABLE = _unavailable.names({
        "Windows' time zone database and its structures are not here: use zoneinfo (IANA names) and datetime":
            "DLLCache DLLHandleCache DYNAMIC_TIME_ZONE_INFORMATION GetTZCapabilities RangeMap SYSTEMTIME "
            "TIME_ZONE_INFORMATION TimeZoneDefinition resolveMUITimeZone",
    })
    __getattr__ = _unavailable.module_getattr("win32timezone", UNAVAILABLE, globals())
