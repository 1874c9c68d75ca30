"""The wheel as a user installs it: its own package names, extras, and a foreign ``backend``.

Builds emaboard's wheel and a foreign distribution that ships a top-level ``backend``
package, installs both into a fresh virtual environment (no index: nothing is downloaded)
and runs the ``emaboard`` console script from there.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from emaboard_server.local_server import ServerStartError, free_port, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

FOREIGN_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "foreign-backend"
version = "1.0"

[tool.hatch.build.targets.wheel]
packages = ["backend"]
"""


def build_wheel(project: Path, out: Path) -> Path:
    """``pip wheel`` of ``project`` into the empty folder ``out`` (hatchling from this
    environment, no index); returns the wheel's path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(project)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = out.glob("*.whl")
    return wheel


def foreign_backend(tmp_path: Path) -> Path:
    """A project shipping ``backend/cli.py`` whose ``main`` prints 'foreign backend'."""
    project = tmp_path / "foreign-backend"
    (project / "backend").mkdir(parents=True)
    (project / "backend" / "__init__.py").write_text("")
    (project / "backend" / "cli.py").write_text("def main():\n    print('foreign backend')\n")
    (project / "pyproject.toml").write_text(FOREIGN_PYPROJECT)
    return project


def run(env_dir: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``env_dir/bin/<args[0]>`` with a clean environment and no cwd packages."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ.update(kwargs.pop("env", {}))  # type: ignore[arg-type]
    return subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], capture_output=True,
                          text=True, env=environ, timeout=120, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh venv holding emaboard's wheel and the foreign ``backend`` (no dependencies)."""
    tmp_path = tmp_path_factory.mktemp("packaging")
    emaboard_wheel = build_wheel(REPO, tmp_path / "wheel-emaboard")
    foreign_wheel = build_wheel(foreign_backend(tmp_path), tmp_path / "wheel-foreign")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install",
         "-q", "--no-deps", "--no-index", str(emaboard_wheel), str(foreign_wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return env_dir, emaboard_wheel


def test_wheel_holds_only_emaboards_own_top_level_packages(
    installed: tuple[Path, Path],
) -> None:
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(
        (".dist-info", ".data"))}
    assert top_level == {"ema_core", "emaboard_server"}
    assert "emaboard_server/_frontend/index.html" in names
    assert "emaboard_server/app/alembic/versions/0001_initial_schema.py" in names


def test_base_install_runs_help_and_names_the_extra_for_serve_and_demo(
    installed: tuple[Path, Path], tmp_path: Path,
) -> None:
    env_dir, _ = installed
    # a foreign backend/ on the path (a user's own repository) changes nothing
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "__init__.py").write_text("raise ImportError('user backend')\n")
    help_ = run(env_dir, "emaboard", "--help", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert help_.returncode == 0, help_.stderr
    assert "serve" in help_.stdout and "foreign" not in help_.stdout
    version = run(env_dir, "emaboard", "--version")
    assert version.stdout.strip() == "emaboard 0.1.0"
    serve = run(env_dir, "emaboard", "serve", cwd=tmp_path)
    assert serve.returncode == 2
    assert serve.stderr.strip() == ("emaboard serve needs the 'server' extra (module 'fastapi' "
                                    "is not installed): pip install 'emaboard[server]'")
    demo = run(env_dir, "emaboard", "demo", cwd=tmp_path)
    assert demo.returncode == 2
    assert "pip install 'emaboard[demo]'" in demo.stderr
    foreign = run(env_dir, "python", "-c", "import backend.cli; backend.cli.main()")
    assert foreign.stdout.strip() == "foreign backend"


def test_server_runs_beside_a_foreign_backend_and_survives_its_uninstall(
    installed: tuple[Path, Path], tmp_path: Path,
) -> None:
    env_dir, _ = installed
    # The server's dependencies from this test environment, appended after the venv's own
    # site-packages (a .pth line adds a directory; the .pth files inside it are not run, so
    # this environment's editable emaboard stays invisible).
    (env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
     / "site-packages" / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = run(env_dir, "python", "-c", "import emaboard_server; print(emaboard_server.__file__)")
    assert where.stdout.startswith(str(env_dir)), where.stdout + where.stderr
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "uninstall",
         "-q", "-y", "foreign-backend"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    port = free_port()
    with subprocess.Popen(  # leaving the block closes the pipe and waits
        [str(env_dir / "bin" / "emaboard"), "serve", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    ) as server:  # fmt: skip
        try:
            try:
                wait_healthy(f"http://127.0.0.1:{port}", timeout_s=60, proc=server)
            except ServerStartError as error:
                server.kill()
                raise AssertionError(f"{error}:\n{server.communicate()[0]}") from None
            page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            assert page.status_code == 200 and "emaboard" in page.text
        finally:
            server.terminate()
            server.wait(timeout=20)


def test_the_server_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from emaboard_server.app.core.config import Settings\n"
        "from emaboard_server.app.main import create_app\n"
        f"app = create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "with TestClient(app, base_url='http://localhost') as client:\n"
        "    run = client.post('/api/runs', json={'project': 'p', 'name': 'r'}).json()\n"
        "    client.post(f\"/api/runs/{run['id']}/metrics\",\n"
        "                json={'points': [{'key': 'train/loss', 'step': 1, 'value': 'NaN'}]})\n"
        "    assert client.get('/api/runs').status_code == 200\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
