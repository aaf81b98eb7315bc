"""Conversions at fsspec URLs (`https://`, `s3://`, `gs://`, any protocol fsspec knows).

- `RemoteFolder(url, ...)`: the manifest and charset read remotely, each shard (and its record
  index) fetched on first use into a local cache, checked against the manifest's sha256 before
  it is used. `gntkit.datasets.open(URL)` reads through it.
- The cache (`cache_dir`, default `$GNTKIT_CACHE_DIR` or `~/.cache/gntkit`) is bounded by
  `cache_limit` bytes (default `$GNTKIT_CACHE_LIMIT` or 20 GiB): after each fetch the least
  recently used shard files are deleted until it fits (the file just fetched is kept even if it
  alone is larger). A cached shard is named by its sha256, so a folder converted again never
  serves stale bytes; a file is only renamed into place after its checksum matched.
- `mirror(url)`: a whole folder copied into a temporary local folder (what `gntkit verify URL`
  checks, with its own checksums).
- `upload_folder(local_dir, url)`: a finished conversion uploaded, shards first, manifest last.

Formats whose shards are folders (OutputFormat.folder: LMDB, PaddleOCR) are uploaded like any
other, but `RemoteFolder` (and so `gntkit.datasets.open(URL)` and `gntkit verify URL`) refuses
them: copy such a folder to local disk to read it.

This module imports the standard library only; fsspec (and the protocol's package: aiohttp for
http(s), s3fs, gcsfs) is imported when a URL is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path, PurePosixPath

from gntkit.errors import FormatError, GntkitError, require
from gntkit.shards.digest import sha256_file
from gntkit.shards.manifest import (
    JOURNAL,
    LEGACY_MANIFEST,
    MANIFEST,
    Shard,
    check_manifest,
    is_gntkit_manifest,
    load_manifest,
    manifest_path,
    shards_of,
)
from gntkit.shards.registry import output_format

__all__ = ["is_url", "RemoteFolder", "mirror", "upload_folder", "default_cache_dir", "DEFAULT_CACHE_LIMIT"]

DEFAULT_CACHE_LIMIT = 20 << 30
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# Shards fetched at once when a batch needs several (network round trips overlap).
_FETCH_THREADS = 8


def is_url(path) -> bool:
    """True for a string that starts with a protocol (`scheme://`), i.e. something fsspec opens."""
    return isinstance(path, str) and bool(_URL.match(path))


def default_cache_dir() -> Path:
    """`$GNTKIT_CACHE_DIR`, else `$XDG_CACHE_HOME/gntkit`, else `~/.cache/gntkit`."""
    if os.environ.get("GNTKIT_CACHE_DIR"):
        return Path(os.environ["GNTKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gntkit"


def _cache_limit(limit) -> int:
    if limit is None:
        text = os.environ.get("GNTKIT_CACHE_LIMIT")
        if not text:
            return DEFAULT_CACHE_LIMIT
        try:
            limit = int(text)
        except ValueError:
            raise GntkitError(f"GNTKIT_CACHE_LIMIT must be a number of bytes, found {text!r}.") from None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise GntkitError(f"cache_limit must be a positive number of bytes, found {limit!r}.")
    return limit


def _filesystem(url: str, storage_options: dict | None):
    """(fsspec filesystem, path inside it) for a URL, or one sentence naming what is missing."""
    fsspec = require("fsspec", "remote", f"Reading {url}")
    if storage_options is not None and not isinstance(storage_options, dict):
        raise GntkitError(f"storage_options must be a dict of fsspec options, found {type(storage_options).__name__}.")
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:  # the protocol's own package (aiohttp, s3fs, gcsfs) is not installed
        raise GntkitError(f"{url}: fsspec cannot open this protocol here ({str(exc).splitlines()[0]}); "
                          "run `pip install 'gntkit[remote]'` or the package it names.") from None
    except ValueError as exc:
        raise GntkitError(f"{url}: expected a URL that fsspec can open, found {str(exc).splitlines()[0]}.") from None


def _remote_error(url: str, what: str, exc: Exception) -> GntkitError:
    if isinstance(exc, FileNotFoundError):
        return GntkitError(f"{url}: expected {what}, found no file there.")
    return GntkitError(f"{url}: cannot read {what} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).")


class RemoteFolder:
    """A gntkit conversion at an fsspec URL, read through a local cache.

    Args:
        url: the folder's URL (the one holding gntkit.json, or an older folder's dataset_info.json).
        cache_dir: local cache root (default: `default_cache_dir()`).
        cache_limit: bytes of shard files the cache keeps (default `$GNTKIT_CACHE_LIMIT`, else 20 GiB).
        storage_options: passed to fsspec (e.g. `{"endpoint_url": "http://..."}` for S3).

    Attributes:
        url: the folder's URL, without a trailing slash.
        local: the local folder that holds the charset files (what ShardSet.path names).
        objects: the local folder that holds fetched shards and record indexes.

    Picklable: data-loader workers reopen the filesystem in their own process.
    """

    def __init__(self, url: str, cache_dir=None, cache_limit: int | None = None, storage_options: dict | None = None):
        if not is_url(url):
            raise GntkitError(f"expected a URL (scheme://...), found {url!r}.")
        self.url = url.rstrip("/")
        self.storage_options = storage_options
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_limit = _cache_limit(cache_limit)
        slug = hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]
        self.local = self.cache_dir / "folders" / slug
        self.objects = self.cache_dir / "objects" / slug
        self._fs, self._root, self._pid = None, None, None
        self._remote_names: dict[Path, str] = {}  # cached path -> file name in the remote folder
        self._manifest = None
        self._lock = threading.Lock()
        self._prefetcher, self._pending, self._pending_pid = None, {}, None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fs"], state["_root"], state["_lock"] = None, None, None
        state["_prefetcher"], state["_pending"], state["_pending_pid"] = None, {}, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def fs(self):
        """The fsspec filesystem (opened on first use, in each process)."""
        if self._fs is None or self._pid != os.getpid():
            # A forked data-loader worker opens its own: fsspec's async filesystems are not fork-safe.
            self._fs, self._root = _filesystem(self.url, self.storage_options)
            self._pid = os.getpid()
        return self._fs

    def remote_path(self, name: str) -> str:
        """The filesystem path of a file of this folder (a name from the manifest)."""
        self.fs  # noqa: B018 - sets _root
        return f"{self._root.rstrip('/')}/{name}"

    def read_bytes(self, name: str, what: str) -> bytes:
        """A whole (small) file of the folder, e.g. the manifest.

        Raises:
            GntkitError: the file is missing or cannot be read.
        """
        try:
            return self.fs.cat_file(self.remote_path(name))
        except Exception as exc:  # fsspec back-ends raise their own types (aiohttp, botocore)
            raise _remote_error(f"{self.url}/{name}", what, exc) from None

    def manifest(self) -> dict:
        """The folder's manifest, checked as gntkit.shards.manifest checks local ones; fetches the charset files too.

        Raises:
            GntkitError / FormatError: no manifest, an incomplete conversion, or a bad field.
        """
        name, manifest = self._read_manifest()
        check_manifest(manifest, f"{self.url}/{name}")
        fmt = output_format(manifest["format"])
        if fmt.folder:  # a shard of many files has no one object to fetch, cache and check
            raise GntkitError(f"{self.url}: expected a conversion whose shards are single files to read from a URL, found {fmt.title} "
                              "shards, which are folders: copy the folder to local disk (e.g. `aws s3 sync`) and read it there.")
        self.local.mkdir(parents=True, exist_ok=True)
        for key in ("json", "file"):  # small, and Charset.load reads them from a folder
            name = manifest["charset"].get(key)
            if isinstance(name, str) and name:
                _write_atomic(self.local / name, self.read_bytes(name, "the charset file the manifest names"))
        self._manifest = manifest
        return manifest

    def _read_manifest(self) -> tuple[str, dict]:
        """(file name, parsed manifest): `gntkit.json`, else an older folder's `dataset_info.json`
        when its content is gntkit's (TFDS's own file of that name is not)."""
        what = "a complete gntkit conversion's manifest"
        try:
            return MANIFEST, self._parse(MANIFEST, self.read_bytes(MANIFEST, what))
        except GntkitError as missing:
            try:
                legacy = self.fs.cat_file(self.remote_path(LEGACY_MANIFEST))
            except Exception:  # fsspec back-ends raise their own types: no older manifest either
                raise missing from None
            manifest = self._parse(LEGACY_MANIFEST, legacy)
            if not is_gntkit_manifest(manifest):
                raise missing from None
            return LEGACY_MANIFEST, manifest

    def _parse(self, name: str, data: bytes) -> dict:
        where = f"{self.url}/{name}"
        try:
            manifest = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise FormatError(where, exc.start, "a gntkit manifest in UTF-8 JSON", "a byte that is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise FormatError(where, exc.pos, "a gntkit manifest in JSON", f"a syntax error at line {exc.lineno} ({exc.msg})") from None
        if not isinstance(manifest, dict):
            raise FormatError(where, None, "a gntkit manifest as a JSON object", f"a JSON {type(manifest).__name__}")
        return manifest

    def shards(self, split: str) -> list[Shard]:
        """The split's shards with their local cache paths (nothing is fetched yet).

        Raises:
            GntkitError: a shard without a sha256 in the manifest (a fetched file must be checked).
        """
        manifest = self._manifest if self._manifest is not None else self.manifest()
        listed = shards_of(self.objects, manifest, split, check_files=False)
        out = []
        for item, shard in zip(manifest["splits"][split]["shards"], listed):
            if not isinstance(item.get("sha256"), str):
                raise GntkitError(f"{self.url}/{item['file']}: cannot check a fetched shard, {MANIFEST} records no sha256 for it.")
            tag = item["sha256"][:16]  # a shard's cache name carries its digest: a new conversion never reads stale bytes
            path = self.objects / f"{tag}-{item['file']}"
            index = self.objects / f"{tag}-{PurePosixPath(item['index']).name}" if item.get("index") else None
            self._remote_names[path] = item["file"]
            if index is not None:
                self._remote_names[index] = item["index"]
            out.append(replace(shard, path=path, index=index))
        return out

    def fetch(self, shards: list[Shard]) -> None:
        """Make each shard (and its record index) present in the cache, checked; several at once.

        Raises:
            GntkitError: a shard cannot be fetched, or its bytes fail the manifest's sha256.
        """
        for shard in shards:  # a prefetch in flight: wait for it (its errors are this fetch's errors)
            pending = self._pending.pop(shard.path, None) if self._pending_pid == os.getpid() else None
            if pending is not None:
                pending.result()
        missing = [s for s in shards if not self._present(s)]
        if len(missing) > 1:
            with ThreadPoolExecutor(min(_FETCH_THREADS, len(missing))) as pool:
                list(pool.map(self._fetch_one, missing))
        elif missing:
            self._fetch_one(missing[0])
        if missing:
            self._evict(keep={p for s in shards for p in (s.path, s.index) if p is not None})

    def prefetch(self, shards: list[Shard]) -> None:
        """Start fetching shards in the background (one at a time), for a reader that knows what comes next.

        `fetch` of a shard waits for its prefetch and raises its error, if any.
        """
        with self._lock:
            if self._pending_pid != os.getpid():  # a forked worker starts its own thread
                self._prefetcher, self._pending, self._pending_pid = None, {}, os.getpid()
            for shard in shards:
                if shard.path in self._pending or self._present(shard):
                    continue
                if self._prefetcher is None:
                    self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="gntkit-prefetch")
                self._pending[shard.path] = self._prefetcher.submit(self._fetch_one, shard)

    def _present(self, shard: Shard) -> bool:
        try:
            found = shard.path.stat().st_size
            if shard.index is not None:
                shard.index.stat()
        except FileNotFoundError:
            return False
        if shard.bytes is not None and found != shard.bytes:
            return False
        os.utime(shard.path)  # recently used: evicted last
        return True

    def _fetch_one(self, shard: Shard) -> None:
        self.objects.mkdir(parents=True, exist_ok=True)
        name = self._remote_names[shard.path]
        tmp = self._download(name, shard.path)
        found = sha256_file(tmp)
        if found != shard.sha256:
            tmp.unlink(missing_ok=True)
            raise GntkitError(f"{self.url}/{name} fails its checksum: {MANIFEST} says sha256 {shard.sha256}, the fetched file has {found}.")
        if shard.index is not None:
            index_tmp = self._download(self._remote_names[shard.index], shard.index)
            os.replace(index_tmp, shard.index)
        os.replace(tmp, shard.path)  # last: a shard in place means its index is there too

    def _download(self, name: str, target: Path) -> Path:
        """Copy a remote file next to `target` under a name no other process or thread uses."""
        tmp = target.with_name(f"{target.name}.partial-{os.getpid()}-{threading.get_ident()}")
        try:
            self.fs.get_file(self.remote_path(name), str(tmp))
        except Exception as exc:  # fsspec back-ends raise their own types
            tmp.unlink(missing_ok=True)
            raise _remote_error(f"{self.url}/{name}", "a file the manifest lists", exc) from None
        return tmp

    def _evict(self, keep: set) -> None:
        """Delete the least recently used cached files until the cache fits its limit."""
        with self._lock:
            files = []
            for path in (self.cache_dir / "objects").rglob("*"):
                if ".partial-" in path.name:
                    continue
                with contextlib.suppress(FileNotFoundError):  # another process may evict too
                    stat = path.stat()
                    if path.is_file():
                        files.append((stat.st_mtime, stat.st_size, path))
            total = sum(size for _, size, _ in files)
            for _, size, path in sorted(files, key=lambda f: f[0]):
                if total <= self.cache_limit:
                    break
                if path in keep:
                    continue
                # Open shards stay readable: an mmap outlives its file's name.
                path.unlink(missing_ok=True)
                total -= size


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def mirror(url: str, storage_options: dict | None = None, cache_dir=None):
    """A temporary local copy of a remote conversion, file names unchanged (deleted on exit).

    Everything the manifest names is copied as it is, unchecked: the caller (`gntkit verify`)
    does the checking.

    Yields:
        the local folder.

    Raises:
        GntkitError: no manifest, or a listed file that cannot be fetched.
    """
    folder = RemoteFolder(url, cache_dir, None, storage_options)
    manifest = folder.manifest()
    names = [n for n in (manifest["charset"].get("json"), manifest["charset"].get("file")) if isinstance(n, str)]
    for entry in manifest["splits"].values():
        for item in entry["shards"]:
            names += [item["file"]] + ([item["index"]] if item.get("index") else [])
    folder.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gntkit-mirror-", dir=folder.cache_dir) as tmp:
        local = Path(tmp)
        name, _ = folder._read_manifest()
        (local / name).write_bytes(folder.read_bytes(name, "a complete gntkit conversion's manifest"))
        for subfolder in {str(PurePosixPath(n).parent) for n in names} - {"."}:
            (local / subfolder).mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(_FETCH_THREADS) as pool:
            list(pool.map(lambda n: os.replace(folder._download(n, local / n), local / n), names))
        yield local


def upload_folder(local_dir, url: str, storage_options: dict | None = None, progress=None) -> list[str]:
    """Upload a finished conversion to an fsspec URL: shards and every other file first, the manifest last.

    Readers look for the manifest, so a folder is never seen half uploaded. Each shard's
    remote size is checked against the manifest after its upload.

    Args:
        local_dir: a folder written by `gntkit convert` (its manifest must say complete).
        url: the target folder (`s3://bucket/dir`, `gs://...`, any writable fsspec URL).
        storage_options: passed to fsspec.
        progress: optional callable(message) called after each file.

    Returns:
        The uploaded file names, in upload order (the manifest last).

    Raises:
        GntkitError: not a complete conversion, a listed shard missing, or an upload that fails.
    """
    local_dir = Path(local_dir)
    manifest = load_manifest(local_dir)
    for split in manifest["splits"]:
        shards_of(local_dir, manifest, split)  # every listed shard and index is there
    if not is_url(url):
        raise GntkitError(f"expected a URL to upload to (scheme://...), found {url!r}.")
    fs, root = _filesystem(url, storage_options)
    sizes = {item["file"]: item.get("bytes") for entry in manifest["splits"].values() for item in entry["shards"]}
    last = manifest_path(local_dir).name
    names = sorted(p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*")
                   if p.is_file() and p.name not in (last, JOURNAL) and ".partial" not in p.name)
    names.sort(key=lambda n: n not in sizes)  # shards first, then indexes, charset files and metadata
    for name in [*names, last]:
        target = f"{root.rstrip('/')}/{name}"
        try:
            if "/" in name:  # the index folder; object stores have no folders, local ones need it made
                fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(local_dir / name), target)
            if sizes.get(name) is not None and fs.size(target) != sizes[name]:
                raise GntkitError(f"{url}/{name}: expected {sizes[name]} bytes after upload, found {fs.size(target)}.")
        except GntkitError:
            raise
        except Exception as exc:  # fsspec back-ends raise their own types
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            raise GntkitError(f"{url}/{name}: upload failed ({type(exc).__name__}: {first_line}).") from None
        if progress:
            progress(f"uploaded {name}")
    return [*names, last]
