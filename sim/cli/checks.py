"""Checks of the paths commands are given, made before anything is created.

Each check raises `InputError` naming the option (`--db: /x/core.db: no such folder /x`), so
a command refuses a bad path in one line with exit code 2 before it has written a file,
created a database or started any work. Writability is tested by creating (and removing) a
probe file, which also holds for root and for read-only or special file systems.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from sim.errors import InputError
from sim.report.outputs import check_out_dir


def _reason(err: OSError) -> str:
    return (err.strerror or type(err).__name__).lower()


def writable_folder(folder: Path, option: str, path: Path | None = None) -> None:
    """`folder` exists and a file can be created in it (InputError naming `option` if not)."""
    shown = f"{path}: " if path is not None else ""
    if not folder.exists():
        raise InputError(None, option, f"{shown}no such folder {folder}")
    if not folder.is_dir():
        raise InputError(None, option, f"{shown}{folder} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".sim-probe-", dir=folder)
    except OSError as err:
        raise InputError(None, option, f"{shown}cannot write in {folder}: {_reason(err)}") from None
    os.close(handle)
    os.unlink(probe)


def new_file(path: Path, option: str) -> Path:
    """A file the command will write (created or replaced): not a folder, in a writable one."""
    if path.is_dir():
        raise InputError(None, option, f"{path} is a folder, not a file")
    writable_folder(path.parent, option, path)
    if path.exists():
        _open(path, "r+b", option)
    return path


def existing_file(path: Path, option: str) -> Path:
    """A file the command will read: it exists, is a file and can be opened."""
    if not path.exists():
        raise InputError(None, option, f"{path}: no such file")
    if path.is_dir():
        raise InputError(None, option, f"{path} is a folder, not a file")
    _open(path, "rb", option)
    return path


def database(path: Path, option: str = "--db", *, must_exist: bool = False) -> Path:
    """A SQLite database path: an existing file, or (unless `must_exist`) one that can be
    created; its folder must be writable either way (SQLite keeps its WAL beside it)."""
    if must_exist and not path.exists():
        raise InputError(None, option, f"{path}: no such database")
    return new_file(path, option)


def out_folder(out: Path, option: str = "--out") -> Path:
    """A report folder `check_out_dir` will accept when the report is written, in a place
    that can really be written to. Creates nothing: missing parents are made with the report."""
    parent = out.resolve().parent
    if parent.exists():
        try:
            out = check_out_dir(out)  # its parent exists: it creates nothing
        except InputError as err:
            raise InputError(None, option, err.problem) from None
        writable_folder(parent, option, out)
        return out
    ancestor = parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    writable_folder(ancestor, option, out)
    return out


def _open(path: Path, mode: str, option: str) -> None:
    try:
        with path.open(mode):
            pass
    except OSError as err:
        raise InputError(None, option, f"{path}: cannot open: {_reason(err)}") from None


def listen_address(host: str, port: int, host_option: str, port_option: str) -> None:
    """HOST:PORT can be listened on: the port is 0-65535, the host resolves to a local
    address and the port is free there. Tested by binding a socket and closing it again."""
    if not 0 <= port <= 65535:
        raise InputError(None, port_option, f"must be 0-65535 (got {port})")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise InputError(None, host_option, f"{host}: unknown host ({err.strerror})") from None
    except (UnicodeError, ValueError) as err:
        raise InputError(None, host_option, f"{host}: not a host name ({err})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            option = port_option if err.errno in (errno.EADDRINUSE, errno.EACCES) else host_option
            problem = f"cannot listen on {host}:{port}: {_reason(err)}"
            raise InputError(None, option, problem) from None
