"""The Event Log message file, built by hand: a resource-only DLL whose message table renders
every servicehost event id as its one insertion string (``%1``).

Event Viewer and ``FormatMessage`` load a source's ``EventMessageFile`` as a data file to turn a
record's id into text; without one every record reads "The description for Event ID ... cannot be
found". No compiler is needed: :func:`message_table` writes the MESSAGE_RESOURCE_DATA and
:func:`resource_dll` wraps it in the smallest PE32+ image Windows loads. Pure bytes: tested on every OS.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from ... import logs

MESSAGE_TEXT = "%1\r\n"


def message_table(ids: Iterable[int], text: str = MESSAGE_TEXT) -> bytes:
    """A binary MESSAGE_RESOURCE_DATA: every id → ``text`` (UTF-16), one block per run of ids."""
    ordered = sorted(set(ids))
    blocks: list[list[int]] = []
    for event_id in ordered:
        if blocks and event_id == blocks[-1][-1] + 1:
            blocks[-1].append(event_id)
        else:
            blocks.append([event_id])
    encoded = (text + "\0").encode("utf-16-le")
    encoded += b"\0" * (-len(encoded) % 4)
    entry = struct.pack("<HH", 4 + len(encoded), 1) + encoded  # Length, Flags=MESSAGE_RESOURCE_UNICODE
    offset = 4 + 12 * len(blocks)
    header, body = [struct.pack("<I", len(blocks))], []
    for block in blocks:
        header.append(struct.pack("<III", block[0], block[-1], offset))
        body.append(entry * len(block))
        offset += len(entry) * len(block)
    return b"".join(header + body)


def resource_dll(table: bytes) -> bytes:
    """A resource-only PE32+ DLL holding ``table`` as RT_MESSAGETABLE 1 (language neutral): the
    EventMessageFile Event Viewer and FormatMessage load (as a data file) to render an event."""
    rt_messagetable, section_rva, file_align, section_align = 11, 0x1000, 0x200, 0x1000

    def directory(entry_id: int, target: int) -> bytes:
        return struct.pack("<IIHHHH", 0, 0, 0, 0, 0, 1) + struct.pack("<II", entry_id, target)

    # .rsrc: three one-entry directories (type → name → language), a data entry, then the table.
    data_offset = 3 * 24 + 16
    rsrc = (directory(rt_messagetable, 0x80000000 | 24) + directory(1, 0x80000000 | 48)
            + directory(0, 72) + struct.pack("<IIII", section_rva + data_offset, len(table), 0, 0) + table)
    raw_size = -(-len(rsrc) // file_align) * file_align
    image_size = section_rva + -(-len(rsrc) // section_align) * section_align
    dos = b"MZ" + b"\0" * 58 + struct.pack("<I", 0x40)
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 240, 0x2022)  # AMD64, DLL | executable | large addr
    optional = struct.pack(
        "<HBBIIIII", 0x20B, 14, 0, 0, raw_size, 0, 0, 0,  # PE32+, no code, no entry point
    ) + struct.pack(
        "<QIIHHHHHHIIIIHHQQQQII", 0x180000000, section_align, file_align, 6, 0, 0, 0, 6, 0, 0,
        image_size, file_align, 0, 2, 0x0100, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    )
    directories = [(0, 0)] * 16
    directories[2] = (section_rva, len(rsrc))  # IMAGE_DIRECTORY_ENTRY_RESOURCE
    optional += b"".join(struct.pack("<II", *d) for d in directories)
    section = struct.pack("<8sIIIIIIHHI", b".rsrc", len(rsrc), section_rva, raw_size, file_align, 0, 0, 0, 0,
                          0x40000040)  # initialized data, readable
    headers = dos + b"PE\0\0" + coff + optional + section
    return headers + b"\0" * (file_align - len(headers)) + rsrc + b"\0" * (raw_size - len(rsrc))


def event_ids() -> list[int]:
    """Every id the Event Log handler writes: each named ``logs`` event, and 0 for records of
    the service's own code."""
    return sorted({0, *logs.EVENTS})


__all__ = ["MESSAGE_TEXT", "event_ids", "message_table", "resource_dll"]
