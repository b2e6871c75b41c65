"""The run folder: the one place an experiment's numbers are written and read back.

Every experiment, tracked training run and stiffness run keeps its files through
this module, so each guarantee below holds everywhere.

A :class:`RunFolder` holds

* ``config.json`` — ``{"format", "config", "versions", "version_history"}``: the
  run's configuration (any JSON object), the versions of pyodejl and of the
  packages whose numerics can change a number (:func:`package_versions`), and
  after a resume allowed across versions, ``[{"until_step": n, "versions": {...}}]``;
* ``records.jsonl`` — append-only records, one JSON object a line, each with an
  integer ``"step"``; every append is flushed and fsynced;
* ``checkpoint.npz`` — the state a resumed run continues from: ``step``, the
  number of records written up to it (``num_records``), and the caller's arrays
  (θ, the Optax state's leaves, ...);
* ``result.json`` — the run's final measurements; its presence marks the run
  finished.

Every whole-file write goes to a temporary file in the folder, is fsynced and
moved into place with :func:`os.replace`, so a kill leaves the old or the new
version. On resumption the records past the checkpoint are dropped and
recomputed, so none is lost or written twice; a last record line cut short by a
kill (no newline) is dropped the same way. Any other file that cannot be read —
not JSON, not an archive, wrong keys or shapes — raises :class:`RunFolderError`
naming it, and nothing is written.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "VERSION_PACKAGES",
    "ConfigMismatchError",
    "RunFolder",
    "RunFolderError",
    "VersionMismatchError",
    "atomic_savez",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "git_commit",
    "jsonl_text",
    "load_npz",
    "package_versions",
    "read_json",
    "read_jsonl",
    "version_differences",
]

FORMAT_VERSION = 1
#: Packages whose versions a run folder records (besides pyodejl itself): the ones
#: whose numerics can change the numbers of a run.
VERSION_PACKAGES = ("jax", "jaxlib", "diffrax", "equinox", "optax", "numpy")


class ConfigMismatchError(ValueError):
    """A run folder exists with a different configuration."""


class VersionMismatchError(ConfigMismatchError):
    """A run folder was computed under other package versions (or records none).

    Attributes:
        differences: ``{package: (saved version, current version)}``; saved
            versions are None when the folder records none.
    """

    def __init__(self, message, differences):
        super().__init__(message)
        self.differences = dict(differences)


class RunFolderError(ValueError):
    """A file of a run folder cannot be read: truncated, garbage, or inconsistent.

    Attributes:
        path: the file.
        problem: what is wrong with it.
    """

    def __init__(self, path, problem):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"run folder file {self.path} is unreadable: {problem}. Restore it, or delete the "
                         "run folder to start over")


def package_versions() -> dict[str, str | None]:
    """``{"pyodejl": pyodejl.__version__, "jax": ..., ...}`` for :data:`VERSION_PACKAGES`
    (None for a package that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    import pyodejl

    out = {"pyodejl": pyodejl.__version__}
    for name in VERSION_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def utc_timestamp() -> str:
    """Now, in UTC, as ISO 8601 to the second: the date every record and report carries."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def git_commit(path=None) -> str | None:
    """The commit checked out where pyodejl lives (``-dirty`` with uncommitted changes), or None."""
    here = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def version_differences(saved: dict | None, current: dict) -> dict:
    """``{package: (saved, current)}`` for every package whose version differs.

    ``saved=None`` (a folder that records no versions) differs in every package.
    """
    saved = {} if saved is None else saved
    return {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)}


# --------------------------------------------------------------------------------------
# atomic whole-file writes, validated reads
# --------------------------------------------------------------------------------------


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, os.replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    """Atomic JSON write (indented, UTF-8, newline-terminated)."""
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def atomic_savez(path, **arrays) -> None:
    """``np.savez`` to ``path`` atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path) -> dict:
    """All arrays of an ``.npz`` file (``{}`` if it does not exist).

    Raises:
        RunFolderError: the file is not a readable ``.npz`` archive.
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.array(z[k]) for k in z.files}
    except Exception as exc:  # noqa: BLE001 - BadZipFile, ValueError, OSError, EOFError, ...: all mean "corrupt"
        raise RunFolderError(path, f"not a readable .npz archive ({type(exc).__name__}: {exc})") from exc


def read_json(path, expect=dict):
    """The JSON value of ``path``, checked to be an ``expect`` (default a JSON object).

    Raises:
        FileNotFoundError: no such file.
        RunFolderError: not UTF-8, not JSON, or another type.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RunFolderError(path, f"not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise RunFolderError(path, f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(value, expect):
        names = {dict: "object", list: "array"}
        raise RunFolderError(path, f"expected a JSON {names.get(expect, expect.__name__)}, found "
                                   f"{names.get(type(value), type(value).__name__)}")
    return value


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _digest(records) -> str:
    """SHA-256 of records as the folder writes them: ties a checkpoint to the records before it."""
    import hashlib

    return hashlib.sha256(jsonl_text(records).encode("utf-8")).hexdigest()


def _parse_jsonl(path, text: str, key: str, allow_cut_tail: bool) -> tuple[list[dict], int]:
    """``(objects, bytes of the valid prefix)``; with ``allow_cut_tail`` an unterminated
    last line (a write cut by a kill) is dropped instead of refused."""
    out, valid = [], 0
    lines = text.split("\n")
    for i, line in enumerate(lines, start=1):
        last = i == len(lines)
        if last and line == "":
            break
        try:
            obj = json.loads(line) if line.strip() else None
        except json.JSONDecodeError as exc:
            if last and allow_cut_tail:
                break
            raise RunFolderError(path, f"line {i} is not valid JSON ({exc.msg})") from exc
        if last and allow_cut_tail:
            break  # complete JSON without its newline: the append was cut before the newline landed
        if obj is not None:
            if not isinstance(obj, dict) or not _is_int(obj.get(key)):
                raise RunFolderError(path, f"line {i} is not a JSON object with an integer {key!r}")
            out.append(obj)
        valid += len(line.encode("utf-8")) + 1
    return out, valid


def read_jsonl(path, key: str = "step") -> list[dict]:
    """The JSON objects of a ``.jsonl`` file of a run folder, one per line, each with
    an integer ``key`` (default ``"step"``; ``[]`` if the file does not exist).

    Raises:
        RunFolderError: a line that is not such an object (naming the line).
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunFolderError(path, f"not UTF-8 text ({exc.reason})") from exc
    return _parse_jsonl(path, text, key, allow_cut_tail=False)[0]


def jsonl_text(rows) -> str:
    """One JSON object a line, each newline-terminated."""
    return "".join(json.dumps(r, sort_keys=False, allow_nan=True) + "\n" for r in rows)


# --------------------------------------------------------------------------------------
# the run folder
# --------------------------------------------------------------------------------------


class RunFolder:
    """One run's folder (see the module docstring for its files).

    Opening a folder that does not exist creates it with ``config``; opening an
    existing one checks that it holds the same configuration and, unless the
    run is finished, the same package versions.

    Args:
        path: the folder.
        config: the run's configuration, a JSON object; ``None`` opens an
            existing folder read-only, whatever its configuration.
        allow_version_change: resume an unfinished run computed under other
            package versions; the old versions go to ``version_history``.

    Raises:
        ConfigMismatchError: the folder holds another configuration.
        VersionMismatchError: an unfinished run of other package versions.
        FileNotFoundError: ``config=None`` and the folder has no ``config.json``.
        RunFolderError: a file of the folder cannot be read.
    """

    CONFIG, RECORDS, CHECKPOINT, RESULT = "config.json", "records.jsonl", "checkpoint.npz", "result.json"

    def __init__(self, path, config: dict | None = None, *, allow_version_change: bool = False):
        self.path = Path(path)
        config_path = self.path / self.CONFIG
        if config is not None:
            config = json.loads(json.dumps(config))  # the JSON form, as it is compared after a reload
        if not config_path.exists():
            if config is None:
                raise FileNotFoundError(f"{self.path} is not a run folder (no {self.CONFIG})")
            self.path.mkdir(parents=True, exist_ok=True)
            self.config, self.versions, self.version_history = config, package_versions(), []
            self._write_config()
            return
        self.config, self.versions, self.version_history = self._read_config()
        if config is None:
            return
        if self.config != config:
            diff = ", ".join(f"{k}: saved {self.config.get(k)!r}, now {config.get(k)!r}"
                             for k in sorted(set(self.config) | set(config)) if self.config.get(k) != config.get(k))
            raise ConfigMismatchError(f"run folder {self.path} holds a run with a different configuration ({diff}); "
                                      "it cannot be resumed with these settings. Use another folder, or delete "
                                      "this one to start over")
        current = package_versions()
        differences = version_differences(self.versions, current)
        if differences and not self.finished:
            if not allow_version_change:
                raise VersionMismatchError(
                    f"run folder {self.path} was computed under other package versions ("
                    + ", ".join(f"{k}: saved {a}, now {b}" for k, (a, b) in differences.items())
                    + "); resuming it would mix results of different versions. Pass allow_version_change=True "
                    "(command line: --allow-version-change) to resume anyway, or use another folder", differences)
            step = self.checkpoint_step()
            self.version_history = [*self.version_history, {"until_step": step, "versions": self.versions}]
            self.versions = current
            self._write_config()

    def __repr__(self):
        return f"RunFolder({str(self.path)!r})"

    # ---- configuration ----------------------------------------------------------
    def _write_config(self):
        atomic_write_json(self.path / self.CONFIG, {
            "format": FORMAT_VERSION, "config": self.config, "versions": self.versions,
            "version_history": self.version_history})

    def _read_config(self):
        path = self.path / self.CONFIG
        d = read_json(path)
        if d.get("format") != FORMAT_VERSION:
            raise RunFolderError(path, f"format {d.get('format')!r} is not this version's ({FORMAT_VERSION})")
        config, versions, history = d.get("config"), d.get("versions"), d.get("version_history", [])
        if not isinstance(config, dict):
            raise RunFolderError(path, "'config' must be a JSON object")
        if not (isinstance(versions, dict) and all(
                isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in versions.items())):
            raise RunFolderError(path, "'versions' must map package names to version strings")
        if not (isinstance(history, list) and all(isinstance(h, dict) for h in history)):
            raise RunFolderError(path, "'version_history' must be a list of objects")
        return config, versions, history

    # ---- records ------------------------------------------------------------------
    def records(self) -> list[dict]:
        """The records, in the order written; a last line cut short by a kill is left out.

        Raises:
            RunFolderError: any other line that is not a JSON object with an integer ``"step"``.
        """
        return self._records()[0]

    def _records(self) -> tuple[list[dict], int]:
        path = self.path / self.RECORDS
        if not path.exists():
            return [], 0
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            # a cut multi-byte character can only sit in an unterminated last line
            raw = path.read_bytes()
            cut = raw.rfind(b"\n") + 1
            try:
                text = raw[:cut].decode("utf-8")
            except UnicodeDecodeError:
                raise RunFolderError(path, f"not UTF-8 text ({exc.reason})") from exc
        return _parse_jsonl(path, text, "step", allow_cut_tail=True)

    def append(self, record: dict) -> None:
        """Append one record (a JSON object with an integer ``"step"``), flushed and fsynced."""
        if not (isinstance(record, dict) and _is_int(record.get("step"))):
            raise ValueError(f"a record must be a dict with an integer 'step', got {record!r}")
        path = self.path / self.RECORDS
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                cut = fh.read(1) != b"\n"
            if cut:  # a line cut by a kill: drop it rather than glue the new record onto it
                self._truncate_records(len(self.records()))
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _truncate_records(self, count: int, digest: str | None = None) -> None:
        records, valid = self._records()
        path = self.path / self.RECORDS
        size = path.stat().st_size if path.exists() else 0
        if count > len(records):
            raise RunFolderError(path, f"holds {len(records)} complete records, but the checkpoint was written "
                                       f"after {count}")
        if digest is not None and _digest(records[:count]) != digest:
            raise RunFolderError(path, f"its first {count} records are not the ones the checkpoint was written "
                                       "after")
        if count < len(records) or valid < size:
            atomic_write_text(path, jsonl_text(records[:count]))

    # ---- checkpoint ---------------------------------------------------------------
    def save_checkpoint(self, step: int, arrays: dict) -> None:
        """Write the state after ``step`` optimiser steps (``arrays``: name → array),
        noting how many records were written up to it."""
        reserved = {"step", "num_records", "records_digest"} & set(arrays)
        if reserved:
            raise ValueError(f"checkpoint array names {sorted(reserved)} are reserved")
        records = self.records()
        atomic_savez(self.path / self.CHECKPOINT, step=np.int64(step), num_records=np.int64(len(records)),
                     records_digest=np.str_(_digest(records)), **{k: np.asarray(v) for k, v in arrays.items()})

    def checkpoint_step(self) -> int:
        """The step of the checkpoint (0 when there is none)."""
        ck = self._checkpoint(None)
        return 0 if ck is None else ck[0]

    def _checkpoint(self, template):
        path = self.path / self.CHECKPOINT
        arrays = load_npz(path)
        if not arrays:
            if path.exists():
                raise RunFolderError(path, "the archive holds no arrays")
            return None
        for k in ("step", "num_records"):
            if k not in arrays or arrays[k].shape != () or arrays[k].dtype.kind not in "iu":
                raise RunFolderError(path, f"{k!r} is missing or not an integer scalar")
        step, count = int(arrays.pop("step")), int(arrays.pop("num_records"))
        digest = arrays.pop("records_digest", None)
        if digest is None or digest.shape != () or digest.dtype.kind != "U":
            raise RunFolderError(path, "'records_digest' is missing or not a string")
        if template is not None:
            missing = sorted(set(template) - set(arrays))
            if missing:
                raise RunFolderError(path, f"missing arrays {missing}")
            for k, like in template.items():
                like = np.asarray(like)
                if arrays[k].shape != like.shape or arrays[k].dtype != like.dtype:
                    raise RunFolderError(path, f"array {k!r} is {arrays[k].dtype}{list(arrays[k].shape)}, "
                                               f"expected {like.dtype}{list(like.shape)}")
        return step, count, arrays, str(digest)

    def resume(self, template: dict) -> tuple[int, dict] | None:
        """Prepare to continue: the checkpoint's ``(step, arrays)``, or None to start over.

        Records written after the checkpoint (and a line cut by a kill) are
        dropped, so the resumed run writes each of them exactly once.

        Args:
            template: name → an array of the expected shape and dtype, for
                every array the checkpoint must hold.

        Raises:
            RunFolderError: an unreadable checkpoint or records file, or one
                whose arrays do not match ``template``.
        """
        ck = self._checkpoint(template)
        if ck is None:
            self._truncate_records(0)
            return None
        step, count, arrays, digest = ck
        self._truncate_records(count, digest)
        return step, arrays

    def check(self) -> None:
        """Read every file once, so that a corrupt one is reported before anything is written.

        Raises:
            RunFolderError: naming the first unreadable file.
        """
        self.records()
        self._checkpoint(None)
        self.result()

    # ---- result -------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return (self.path / self.RESULT).exists()

    def finish(self, result: dict) -> None:
        """Write the final measurements (a JSON object); the run is then finished."""
        atomic_write_json(self.path / self.RESULT, result)

    def result(self) -> dict | None:
        """The final measurements, or None while the run is unfinished.

        Raises:
            RunFolderError: ``result.json`` is not a JSON object.
        """
        path = self.path / self.RESULT
        return read_json(path) if path.exists() else None
