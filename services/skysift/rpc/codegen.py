"""Generate the protobuf/gRPC Python code from ``protos/`` into the package (``skysift/v1``).

The generated modules live at ``skysift.v1`` rather than under ``rpc/`` because protoc writes imports that
follow the proto package (``from skysift.v1 import common_pb2``); keeping that path avoids rewriting them.
A test regenerates into a temporary directory and fails when the committed code is stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = ROOT / "protos"
PACKAGE_ROOT = ROOT / "services"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "skysift" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (grpc_tools) on every .proto; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    pkg = out_dir / "skysift" / "v1"
    (pkg / "__init__.py").write_text('"""Generated from protos/skysift/v1 by `make proto`; do not edit."""\n')
    return sorted(pkg.iterdir())


def stale_files() -> list[str]:
    """Names of generated files that differ from a fresh generation (empty when current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        current_dir = PACKAGE_ROOT / "skysift" / "v1"
        stale = [f.name for f in fresh if not (current_dir / f.name).exists() or (current_dir / f.name).read_bytes() != f.read_bytes()]
        extra = {p.name for p in current_dir.glob("*.py*")} - {f.name for f in fresh}
        return sorted(stale + list(extra))


def main() -> None:
    written = generate(PACKAGE_ROOT)
    print("\n".join(str(p.relative_to(ROOT)) for p in written))


if __name__ == "__main__":
    sys.exit(main())
