"""The committed stubs match the protos, and the contracts pass buf lint."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> object:
    spec = importlib.util.spec_from_file_location(
        "generate_protos", ROOT / "scripts" / "generate_protos.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_stale_check_names_a_changed_stub(tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(ROOT / "services" / "v1", copy)
    stub = copy / "collector_service_pb2.pyi"
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    (copy / "similarity_service_pb2.py").unlink()
    stale = _generator().stale_files(copy)  # type: ignore[attr-defined]
    assert stale == ["collector_service_pb2.pyi", "similarity_service_pb2.py"]


def test_buf_lint_is_clean() -> None:
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
