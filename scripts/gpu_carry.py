"""Carry wheels to the GPU machine in parts (issue 24's kit; standard library only).

The device tool sends the working tree plus named ignored paths, at most 64 MiB per call, and the GPU
machine reaches no package registry. onnxruntime-gpu alone is ~256 MB, so ``scripts/gpu-prepare.sh``
packs the wheels into one tar split into parts under the limit (``pack``), and ``scripts/gpu-check.sh``
collects the parts call by call into its state folder on the (warm) machine (``stage``), then unpacks
them once all are there (``unpack``). Every part and every wheel is checked against its sha256.

    python3 scripts/gpu_carry.py pack   --wheels .gpu-wheels/wheels --carry .gpu-wheels/carry [--part-mib 54]
    python3 scripts/gpu_carry.py stage  --carry .gpu-wheels/carry --state STATE     # exit 3: parts missing
    python3 scripts/gpu_carry.py unpack --state STATE --dest STATE/wheels
    python3 scripts/gpu_carry.py plan   --carry .gpu-wheels/carry                   # the device calls to make
    python3 scripts/gpu_carry.py verify --carry .gpu-wheels/carry                   # here: parts intact?
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

EXIT_MISSING = 3
MANIFEST = "MANIFEST.json"
CHUNK = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class _PartWriter(io.RawIOBase):
    """A write-only stream that cuts what it is given into files of ``part_bytes``."""

    def __init__(self, folder: Path, part_bytes: int) -> None:
        self.folder = folder
        self.part_bytes = part_bytes
        self.parts: list[dict[str, Any]] = []
        self._f: Any = None
        self._h: Any = None
        self._n = 0

    def writable(self) -> bool:
        return True

    def _close_part(self) -> None:
        if self._f is not None:
            self._f.close()
            self.parts[-1] |= {"bytes": self._n, "sha256": self._h.hexdigest()}
            self._f = None

    def write(self, b: Any) -> int:
        data = memoryview(b).cast("B")
        done = 0
        while done < len(data):
            if self._f is None or self._n >= self.part_bytes:
                self._close_part()
                name = f"part-{len(self.parts):02d}"
                self.parts.append({"name": name})
                self._f = (self.folder / name).open("wb")
                self._h = hashlib.sha256()
                self._n = 0
            take = min(len(data) - done, self.part_bytes - self._n)
            chunk = data[done : done + take]
            self._f.write(chunk)
            self._h.update(chunk)
            self._n += take
            done += take
        return len(data)

    def close(self) -> None:
        self._close_part()
        super().close()


def pack(wheels: Path, carry: Path, part_mib: float, notes: dict[str, Any]) -> dict[str, Any]:
    files = sorted(p for p in wheels.iterdir() if p.suffix == ".whl")
    if not files:
        raise SystemExit(f"pack: no wheels in {wheels}")
    carry.mkdir(parents=True, exist_ok=True)
    for old in carry.glob("part-*"):
        old.unlink()
    writer = _PartWriter(carry, int(part_mib * (1 << 20)))
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for p in files:
            info = tar.gettarinfo(str(p), arcname=f"wheels/{p.name}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with p.open("rb") as f:
                tar.addfile(info, f)
    writer.close()
    wheel_list = [{"name": p.name, "bytes": p.stat().st_size, "sha256": sha256(p)} for p in files]
    ident = hashlib.sha256("".join(w["sha256"] for w in wheel_list).encode()).hexdigest()[:16]
    manifest = {
        "id": ident,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "part_mib": part_mib,
        "parts": writer.parts,
        "wheels": wheel_list,
        "total_bytes": sum(w["bytes"] for w in wheel_list),
        **notes,
    }
    (carry / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _load(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc
    except (OSError, ValueError):
        return None


def stage(carry: Path, state: Path) -> tuple[dict[str, Any], list[str], list[str]]:
    """Copy the carried manifest and parts into ``state/parts``; return (manifest, have, missing)."""
    dest = state / "parts"
    dest.mkdir(parents=True, exist_ok=True)
    carried = _load(carry / MANIFEST)
    staged = _load(dest / MANIFEST)
    if carried is not None and (staged is None or staged["id"] != carried["id"]):
        for old in dest.glob("part-*"):  # parts of another wheel set
            old.unlink()
        shutil.copyfile(carry / MANIFEST, dest / MANIFEST)
        staged = carried
    if staged is None:
        raise SystemExit(
            f"stage: no {MANIFEST} carried ({carry}) or staged ({dest}); run scripts/gpu-prepare.sh here and "
            "name .gpu-wheels/carry/MANIFEST.json and one part in the call's carry"
        )
    want = {p["name"]: p for p in staged["parts"]}
    for p in sorted(carry.glob("part-*")) if carry.is_dir() else []:
        if p.name in want and not (dest / p.name).is_file():
            if sha256(p) != want[p.name]["sha256"]:
                raise SystemExit(f"stage: {p} does not match its sha256 in {MANIFEST}: carried damaged")
            shutil.copyfile(p, dest / (p.name + ".tmp"))
            (dest / (p.name + ".tmp")).replace(dest / p.name)
    have = [n for n in want if (dest / n).is_file()]
    missing = [n for n in want if n not in have]
    return staged, have, missing


def unpack(state: Path, dest: Path) -> dict[str, Any]:
    parts_dir = state / "parts"
    manifest = _load(parts_dir / MANIFEST)
    if manifest is None:
        raise SystemExit(f"unpack: no {MANIFEST} in {parts_dir}")
    marker = dest / f".unpacked-{manifest['id']}"
    if marker.is_file():
        return manifest

    class _Joined(io.RawIOBase):
        def __init__(self) -> None:
            self.files = [(parts_dir / p["name"]).open("rb") for p in manifest["parts"]]  # type: ignore[index]
            self.i = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            while self.i < len(self.files):
                n = self.files[self.i].readinto(b)
                if n:
                    return int(n)
                self.files[self.i].close()
                self.i += 1
            return 0

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=_Joined(), mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            if not member.isfile() or not member.name.startswith("wheels/") or ".." in member.name:
                raise SystemExit(f"unpack: unexpected member {member.name!r}")
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, dest, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extract(member, dest)
    for w in manifest["wheels"]:
        if sha256(dest / "wheels" / w["name"]) != w["sha256"]:
            raise SystemExit(f"unpack: {w['name']} does not match its sha256")
    marker.write_text(manifest["id"] + "\n")
    return manifest


def plan(carry: Path) -> list[list[str]]:
    manifest = _load(carry / MANIFEST)
    if manifest is None:
        raise SystemExit(f"plan: no {carry / MANIFEST}; run scripts/gpu-prepare.sh")
    return [[f"{carry}/{MANIFEST}", f"{carry}/{p['name']}"] for p in manifest["parts"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--wheels", type=Path, required=True)
    p.add_argument("--carry", type=Path, required=True)
    p.add_argument("--part-mib", type=float, default=54.0)
    p.add_argument("--notes", type=Path, default=None, help="a JSON object merged into the manifest")
    p = sub.add_parser("stage")
    p.add_argument("--carry", type=Path, required=True)
    p.add_argument("--state", type=Path, required=True)
    p = sub.add_parser("unpack")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--dest", type=Path, required=True)
    p = sub.add_parser("plan")
    p.add_argument("--carry", type=Path, required=True)
    p = sub.add_parser("verify")
    p.add_argument("--carry", type=Path, required=True)
    a = ap.parse_args(argv)

    if a.cmd == "pack":
        notes = json.loads(a.notes.read_text()) if a.notes else {}
        m = pack(a.wheels, a.carry, a.part_mib, notes)
        print(
            f"packed {len(m['wheels'])} wheels ({m['total_bytes'] / 1e6:.1f} MB) into {len(m['parts'])} parts"
        )
        return 0
    if a.cmd == "stage":
        m, have, missing = stage(a.carry, a.state)
        print(json.dumps({"id": m["id"], "have": have, "missing": missing}))
        return EXIT_MISSING if missing else 0
    if a.cmd == "unpack":
        m = unpack(a.state, a.dest)
        print(f"unpacked {len(m['wheels'])} wheels into {a.dest / 'wheels'}")
        return 0
    if a.cmd == "plan":
        for i, carry in enumerate(plan(a.carry)):
            print(json.dumps({"call": i + 1, "command": "bash scripts/gpu-check.sh", "carry": carry}))
        return 0
    manifest = _load(a.carry / MANIFEST)
    if manifest is None:
        print(f"verify: no {a.carry / MANIFEST}", file=sys.stderr)
        return 1
    bad = [p["name"] for p in manifest["parts"] if sha256(a.carry / p["name"]) != p["sha256"]]
    print(json.dumps({"id": manifest["id"], "parts": len(manifest["parts"]), "damaged": bad}))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
