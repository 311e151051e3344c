"""Generate the Python stubs of protos/cfgclone/v1 into services/v1 (import name cfgclone.v1).

Run after any change to a .proto file and commit the result:

    python scripts/generate_protos.py

``--check`` regenerates into a temporary folder and exits 1 when the committed
stubs differ, naming the stale files; the test suite runs it.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
PACKAGE_DIR = PROTO_ROOT / "cfgclone" / "v1"
OUTPUT_DIR = ROOT / "services" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
INIT_TEXT = '"""Generated protobuf and gRPC stubs of package cfgclone.v1 (do not edit)."""\n'


def _plugin(name: str) -> str:
    """Path of a protoc plug-in installed beside this interpreter (mypy-protobuf)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: pip install -e '.[dev]'")
    return found


def generate(out_dir: Path) -> None:
    """Run protoc with the Python, gRPC and mypy plug-ins into ``out_dir``."""
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PACKAGE_DIR.glob("*.proto"))
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{THIRD_PARTY}",
            f"-I{well_known}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={raw}",
            f"--grpc_python_out={raw}",
            f"--mypy_out={raw}",
            f"--mypy_grpc_out={raw}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in (Path(raw) / "cfgclone" / "v1").iterdir():
            if path.name.endswith(GENERATED_SUFFIXES):
                shutil.copyfile(path, out_dir / path.name)
    (out_dir / "__init__.py").write_text(INIT_TEXT)


def stale_files(committed: Path) -> list[str]:
    """Names of generated files that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as fresh_raw:
        fresh = Path(fresh_raw)
        generate(fresh)
        names = {p.name for p in fresh.iterdir()} | {
            p.name for p in committed.glob("*") if p.name.endswith(GENERATED_SUFFIXES)
        }
        return sorted(
            name
            for name in names
            if not (committed / name).exists()
            or not (fresh / name).exists()
            or not filecmp.cmp(committed / name, fresh / name, shallow=False)
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when committed stubs are stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files(OUTPUT_DIR)
        if stale:
            print("stale generated stubs: " + ", ".join(stale), file=sys.stderr)
            print("run: python scripts/generate_protos.py", file=sys.stderr)
            return 1
        print("generated stubs are up to date")
        return 0
    for old in OUTPUT_DIR.glob("*"):
        if old.name.endswith(GENERATED_SUFFIXES):
            old.unlink()
    generate(OUTPUT_DIR)
    print(f"generated stubs in {OUTPUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
