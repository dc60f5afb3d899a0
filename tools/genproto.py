"""Generates meshactors/v1 (the quarantined generated-code subpackage) from protos/; `--check` fails on a diff."""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT_PKG = ROOT / "meshactors" / "v1"


def generate(out_root: Path) -> Path:
    files = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "meshactors" / "v1").glob("*.proto"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}",
        f"--python_out={out_root}", f"--grpc_python_out={out_root}", f"--pyi_out={out_root}", *files,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    pkg = out_root / "meshactors" / "v1"
    doc = '"""Generated protobuf/gRPC code for meshactors.v1 (do not edit; run tools/genproto.py)."""\n'
    (pkg / "__init__.py").write_text(doc)
    return pkg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if the committed code differs from a fresh run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        if args.check:
            names = sorted(p.name for p in fresh.iterdir() if p.is_file())
            committed = sorted(p.name for p in OUT_PKG.iterdir() if p.is_file()) if OUT_PKG.exists() else []
            _, mismatch, errors = filecmp.cmpfiles(fresh, OUT_PKG, names, shallow=False)
            if names != committed or mismatch or errors:
                print(f"meshactors/v1 is stale: regenerate with `python tools/genproto.py` ({mismatch or errors})")
                return 1
            print("meshactors/v1 matches protos/")
            return 0
        if OUT_PKG.exists():
            shutil.rmtree(OUT_PKG)
        shutil.copytree(fresh, OUT_PKG)
        print(f"generated {OUT_PKG}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
