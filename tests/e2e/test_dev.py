"""`skysift dev` (what `make dev` runs) on a clean work directory: every service SERVING, one poll end to end."""

import os
import subprocess
import sys
from pathlib import Path

from skysift.config import SERVICES
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def test_dev_once_serves_everything_and_polls_the_demo_alerts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSIFT_")}
    env.update({f"SKYSIFT_{s.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for s in SERVICES})
    cmd = [str(Path(sys.executable).parent / "skysift"), "dev", "--once", "--workdir", str(tmp_path),
           "--mlflow-port", str(free_port()), "--app-port", str(free_port())]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SERVING") == len(SERVICES)
    assert "no model yet: run `skysift round`" in out.stdout
    store = tmp_path / "store"
    for stage in ("alerts", "enriched", "features"):
        files = sorted(store.glob(f"{stage}/survey=*/night=*/*_{stage}.parquet"))
        assert {f.parent.parent.name for f in files} == {"survey=ztf", "survey=lsst"}, stage
    assert "stopping" in out.stdout
    # the poll above went through the services with a local token made for the stack, shown by path only
    token_file = tmp_path / "auth" / "token"
    token = token_file.read_text().strip()
    assert f"export SKYSIFT_AUTH_TOKEN_FILE={token_file}" in out.stdout
    assert token_file.stat().st_mode & 0o777 == 0o600 and (tmp_path / "auth" / "tokens").stat().st_mode & 0o777 == 0o600
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert token not in out.stdout + out.stderr + logs
